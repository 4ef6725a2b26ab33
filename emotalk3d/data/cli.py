"""`emotalk3d data synth|check|preview` (stub; the data work fills it in)."""


def register(subparsers) -> None:
    p = subparsers.add_parser("data", help="generate, check and preview datasets")
    p.set_defaults(handler=None)
