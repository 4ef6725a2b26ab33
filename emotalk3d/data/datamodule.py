"""Lightning data modules for every trainable stage (re-exported from their modules).

- `speech_data`: S2GNet (audio + emotion -> meshes) and the emotion extractor (audio -> label).
- `image_data`: a subject's multi-view frames for the Gaussian appearance stages.
"""

from emotalk3d.data.image_data import SubjectDataModule  # noqa: F401
from emotalk3d.data.speech_data import EmotionDataModule, S2GDataModule  # noqa: F401
