"""Building a ZIP, shared by BDRs and exports, and what a build reports on its item."""
