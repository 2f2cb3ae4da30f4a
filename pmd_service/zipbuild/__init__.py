"""Building a ZIP, shared by BDRs and exports: streamed from the artworks' sources, with its
JSON files, and what a build reports on its item."""
