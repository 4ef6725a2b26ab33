"""The interactive web viewer: a FastAPI server (this package) and a WebGL client (viewer/web).

`emotalk3d viewer` starts it; `emotalk3d.viewer.server.create_app` builds the app;
docs/viewer.md documents the API and the binary layouts the browser reads.
"""
