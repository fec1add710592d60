"""The web page: ``adadiffsr serve`` (Gradio), its presets and its jobs."""
