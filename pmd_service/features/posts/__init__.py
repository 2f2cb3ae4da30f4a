"""The dashboard's posts: the list, its filter, and bulk actions with their undo."""
