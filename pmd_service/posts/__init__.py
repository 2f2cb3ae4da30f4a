"""The dashboard's posts: listing and batch post actions (hide, unhide, delete, restore, license)."""
