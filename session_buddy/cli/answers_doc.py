"""What each tool answers, for docs/tools.md (``session-buddy docs --write``).

Kept out of the tool descriptions, which every client loads into its context at start. A
test checks every tool has an entry here. Every answer is bounded by ``responses.max_chars``
(server/answers.py): a longer one is cut from the end of its longest list and says so in
``cut``.
"""

from __future__ import annotations

_HITS = (
    "`query`, `mode`, `confidence`, `degraded`, `count`, `hits`, `next_cursor`. A hit: short "
    "`id` (8 characters; `get` takes it), `kind`, `project`, `date`, `score` (2 decimals), "
    "`confidence`, `snippet` (~240 characters around the query's words), `tags` when set, "
    "`via` when reached through the graph (at most `limit` such hits, shorter snippets; "
    "`more_via_graph` counts the rest). `fields=[...]` adds fields, `verbose=true` gives "
    "every field. Nothing relevant: no hits and a plain `message` instead."
)
_STORED = "`id` (whole), `created`, `embedded`."

ANSWERS: dict[str, str] = {
    "health": "`status`, `version`, `uptime_seconds`, `components` (name, status, message, "
    "metadata each), `metadata` (mode, adapters).",
    "store_reflection": _STORED,
    "store_conversation": _STORED,
    "store_conversations": "`stored`, `duplicates`, `items` (" + _STORED[:-1] + " each).",
    "search": _HITS,
    "quick_search": _HITS + " Default limit 5.",
    "get_more_results": _HITS,
    "search_by_file": _HITS,
    "search_by_concept": _HITS,
    "search_code": _HITS,
    "search_errors": "`fixes` first (error, kind, fixed_by, files, run, session_id, "
    "project, fixed_at, match, times_fixed; empty fields left out), then the fields of "
    "`search`.",
    "search_temporal": _HITS + " Without a query the hits are listed newest first.",
    "search_summary": "`query`, `confidence`, `relevant`, `weak`, `by_kind`, `by_project`, "
    "`first`, `last`, `top` (id, kind, project, excerpt, confidence), `degraded`.",
    "get": "The item whole: `id`, `kind`, `project`, `session_id`, `role`, `author`, "
    "`created_at`, `updated_at`, `tags`, `metadata`, `content_length`, `offset`, `content` "
    "(from `offset`; a content past `responses.max_chars` is cut, read on with offset=).",
    "reflection_stats": "`total`, `by_kind`, `by_project`, `embedded`, the embedding model "
    "and dimension, `semantic_search`, `degraded`.",
    "delete_memory": "`id` (whole), `deleted`.",
    "update_reflection": "`id`, `kind`, `content`, `tags`, `updated_at`.",
    "index_transcripts": "The import report: files, turns stored, duplicates, insights and "
    "error-fix pairs found, skipped files.",
    "search_insights": "`query`, `count`, `insights` (the stored insights that match).",
    "insights_statistics": "`total`, `by_project`, `by_topic`, `by_day`, `average_confidence`.",
    "start": "`session` (id, project, project_path, status, started_at), `how`, `project` (name, aliases, "
    "name_source, path, package_manager, git in short, top languages), `handoff` (path, uri, "
    "summary: the previous session's goal, what it did, open problems, next steps; the whole "
    "document is the resource at uri), `reflections` (short id, kind, one line each, tags), "
    "`last_quality` (score, at, top 3 recommendations), `spool_events_applied`. "
    "`detail=true`: the whole project analysis and session record.",
    "checkpoint": "`checkpoint_id`, `session_id`, `project`, `name`, `at`, `score`, "
    "`previous_score`, `delta`, the top 3 `recommendations`, `unknown`, `git_commit` and "
    "`insights_captured` when there are any. `detail=true` adds `breakdown` (each "
    "component's points, evidence and recommendation), `earned`, `possible`.",
    "end": "`session_id`, `status`, `already_ended`, `handoff_path`, `handoff_uri`, "
    "`insights_captured`, `final_checkpoint` (as `checkpoint` answers). `detail=true`: the "
    "final checkpoint whole and the session record.",
    "status": "`session` (the record), `duration_s`, `counts` (messages, reflections, "
    "checkpoints), `last_score`, `spool_events_applied`, `spool_pending`, `health` (status "
    "of each component).",
    "create_session": "The session record (id, name, project, status, times, counts, "
    "metadata, handoff_path).",
    "get_session": "The session record, with its message count.",
    "update_session": "The session record as changed.",
    "list_sessions": "`sessions` (records, newest first), `next_cursor`.",
    "delete_session": "The id and how many messages were deleted.",
    "add_message": "The stored message's id and its session.",
    "get_messages": "`session_id`, `messages` (oldest first), `next_cursor`.",
    "export_session": "`session_id`, `format`, `content` (the export text), counts of "
    "`messages` and `reflections`.",
    "create_project": "The project record (name, path, aliases, description).",
    "create_project_group": "The group (name, projects, description).",
    "list_project_groups": "`count`, `groups`.",
    "add_project_dependency": "The dependency recorded (source, target, type).",
    "remove_project_dependency": "What was removed.",
    "get_project_graph": "`projects`, `dependencies`, `groups`.",
    "search_across_projects": "`query`, `project`, `include`, `searched` (project, tier, "
    "weight, why), `confidence`, `mode`, `degraded`, `count`, `hits` (whole id, kind, "
    "snippet as `content` unless verbose, content_length, scores, tier, project, why, "
    "created_at, tags).",
    "get_project_insights": "`project`, `related_projects`, `insights`, `patterns`, "
    "`items_considered`.",
    "create_team": "The team (name, members, projects).",
    "add_team_member": "The team (name, members, projects), `added`, `user`.",
    "remove_team_member": "The team (name, members, projects), `removed`, `user`.",
    "unshare_reflection": "`id`, `team`, `unshared`.",
    "share_reflection": "`id`, `team`, `shared`.",
    "search_team_knowledge": "`query`, `team`, `user`, `shared_items`, `confidence`, "
    "`mode`, `count`, `hits` (whole id, snippet as `content` unless verbose, votes, author, "
    "shared_by, scores, project, created_at, tags).",
    "vote_on_reflection": "`id`, `user`, `vote` and the item's votes after it.",
    "get_team_statistics": "The team's members, shared items and votes, counted.",
    "sync_now": "The round's report: items, sessions and quality records sent, failures.",
    "sync_status": "`adapter`, `enabled`, `remote`, each stream's cursor and lag, the "
    "circuit, `dlq_size`, the last round and error.",
    "sync_dlq": "The dead-letter entries listed, retried or dropped.",
    "events_webhooks": "Webhooks configured, signing, delivery counters, circuits.",
    "permissions": "`enabled`, `threshold`, the learned `patterns`.",
    "store_test_result": "The run recorded (counts, pass rate, coverage) and the error-fix "
    "pairs it showed.",
    "quality_trend": "`project`, `since`, counts, `score` (min, avg, last), `direction`, "
    "`sparkline`, `points`, `losing_points`.",
    "session_analytics": "The trend of `quality_trend`, time spent, tests, reflections, "
    "insights, the most touched files, the last sessions.",
    "patterns": "`recurring_errors`, `breaking_files`, `topics`, `totals`.",
    "create_entities": "The entities created or updated.",
    "create_relations": "The relations created.",
    "add_observations": "The observations added, per entity.",
    "delete_entities": "How many entities were deleted.",
    "delete_observations": "How many observations were deleted.",
    "delete_relations": "How many relations were deleted.",
    "read_graph": "`entities`, `relations`, `total`, `next_offset`.",
    "search_nodes": "`query`, `mode`, `entities` and the `relations` between them.",
    "open_nodes": "The named entities and their relations.",
    "get_entity_context": "The entity, its neighbours and the memories about them (excerpts).",
    "find_path": "The shortest chain of relations between the two entities.",
}
