"""Building a ZIP, shared by BDRs and exports: the streamed build (build.py), the artworks'
sources, their entry names, the JSON files, and what a build reports on its item (outcome.py)."""
