// Generated from pmd_service/features/posts/filters.py FilterKeys by
// `python -m pmd_service.web.filter_keys`: edit that, not this file.

// The keys of a filter: GET /api/pmd/posts' query parameters, an action's `filter`.
export const FILTER_KEYS = ["q", "hashtag", "license", "hidden", "remixable", "format", "has_layers", "created_after", "created_before", "min_reactions", "min_comments", "min_views"];
// Keys that take several values (repeated in a query, a list in an action's filter).
export const LIST_KEYS = ["hashtag"];
// Keys whose value is true or false.
export const FLAG_KEYS = ["hidden", "remixable", "has_layers"];
// Keys whose value is a whole number.
export const NUMBER_KEYS = ["min_reactions", "min_comments", "min_views"];
