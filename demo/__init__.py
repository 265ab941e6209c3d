"""The gradio demo (``soundctm demo``); the page and its handlers live in ``soundctm.demo``."""
