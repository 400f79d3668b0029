"""chancy's benchmark suite: ``python bench/run.py`` (or ``python -m bench``); see README.md."""
