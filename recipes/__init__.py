"""Training and evaluation recipes: scripts (`python recipes/x.py`), also importable (`from recipes import x`)."""
