"""The dashboard's posts: the list (listing.py, filters.py, cursor.py) and actions on many posts
(batches.py, batch_sql.py, undo.py) under the host's rules (host_rules.py, host_cache.py);
endpoints.py is their HTTP side, schemas.py their shapes."""
