import os

os.environ.setdefault("MEMDYN_NO_PROGRESS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
