"""The dashboard's posts: the list, its filter, and actions on many posts at once (with their
undo), under the host site's rules."""
