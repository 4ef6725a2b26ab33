"""LightningCLI for every trainable part: S2GNet, the emotion extractor and a subject's
appearance. Configs under configs/ name the model and data classes with `class_path`."""

from __future__ import annotations

from lightning.pytorch.cli import LightningCLI


class EmoTalkCLI(LightningCLI):
    """LightningCLI with subclass mode for models and data, and overwrite-safe config saving."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("subclass_mode_model", True)
        kwargs.setdefault("subclass_mode_data", True)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser) -> None:
        """Link what the data defines into the model; jsonargparse skips a link whose source
        or target the chosen classes lack."""
        # speech to geometry: template size and training subjects (S2GDataModule -> S2GModule)
        for source, target in (("num_points", "num_points"), ("subject_names", "subject_names")):
            parser.link_arguments(
                f"data.{source}", f"model.init_args.{target}", apply_on="instantiate"
            )
