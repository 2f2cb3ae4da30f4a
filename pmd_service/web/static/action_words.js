// Generated from pmd_service/features/posts/actions.py ACTIONS by
// `python -m pmd_service.web.action_words`: edit that, not this file.

// Each bulk action's words, by its name: `verb` a title's ("Hide" 3 posts?), `doing` and `done`
// the batch line's ("Hiding" 3 posts…, 3 posts "hidden"), `already` the posts found already so
// ("; 1 already hidden"), `did` "Recent actions"' ("Hid" 3 posts), `undone` what an undo names
// ("Undid the hide of" 3 posts).
export const ACTION_WORDS = {
  "hide": {
    "verb": "Hide",
    "doing": "Hiding",
    "done": "hidden",
    "already": "already hidden",
    "did": "Hid",
    "undone": "hide"
  },
  "unhide": {
    "verb": "Unhide",
    "doing": "Unhiding",
    "done": "unhidden",
    "already": "already visible",
    "did": "Unhid",
    "undone": "unhide"
  },
  "delete": {
    "verb": "Delete",
    "doing": "Deleting",
    "done": "deleted",
    "already": "already deleted",
    "did": "Deleted",
    "undone": "delete"
  },
  "restore": {
    "verb": "Restore",
    "doing": "Restoring",
    "done": "restored",
    "already": "already restored",
    "did": "Restored",
    "undone": "restore"
  },
  "license": {
    "verb": "Relicense",
    "doing": "Changing the license of",
    "done": "relicensed",
    "already": "already had that license",
    "did": "Changed the license of",
    "undone": "license change"
  },
  "tags": {
    "verb": "Retag",
    "doing": "Retagging",
    "done": "retagged",
    "already": "already had those tags",
    "did": "Retagged",
    "undone": "tag change"
  },
  "remixable": {
    "verb": "Set the remix permission of",
    "doing": "Changing remix permission of",
    "done": "changed",
    "already": "already so",
    "did": "Changed the remix permission of",
    "undone": "remix permission change"
  }
};
// Actions that move posts between "Posts" and "Recently deleted".
export const MOVING = ["delete", "restore"];
// Actions that bring deleted posts back.
export const RESTORING = ["restore"];
// Where each action is sent.
export const ENDPOINTS = {
  "hide": "/api/pmd/action",
  "unhide": "/api/pmd/action",
  "delete": "/api/pmd/action",
  "restore": "/api/pmd/action",
  "license": "/api/pmd/license",
  "tags": "/api/pmd/action",
  "remixable": "/api/pmd/action"
};
