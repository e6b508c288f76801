"""Teams: sharing reflections with the people you work with, with access control.

No MCP in here: the rules are enforced in this service, so every front (MCP tools, the HTTP
service, a library user) gets the same answers.

**Who acts.** Every method acts as :func:`session_buddy.core.users.acting_user` (the
authenticated request's user, else ``settings.user``, else the login name). Methods that take
a ``user`` argument check it with :func:`~session_buddy.core.users.resolve_user_argument`: it
may only name the acting user, unless the request is not authenticated and
:attr:`TeamService.allow_user_override` was set explicitly (off by default).

**What a user sees.** Their own memory items (see :func:`~session_buddy.core.users.owner_of`)
and the items shared with a team they are a member of; nothing else. A team, its members,
its shared items, its votes and its statistics are visible to its members only. To anybody
else a team that exists and a team that does not are the same: every call answers the same
:class:`~session_buddy.errors.NotFound` (same message), and an item id they cannot see
answers exactly like an id that does not exist.

**Rules.**

* The creator of a team is its first member; any member may add members. A member may
  leave; only the creator may remove someone else; the last member cannot leave.
* Only the owner of an item may share it (reflections and insights, not conversation turns),
  and only with a team they belong to. Sharing twice is a no-op. The author or the member
  who shared an item may withdraw it from the team (``unshare_reflection``).
* A user may vote ``+1`` or ``-1`` on an item shared with one of their teams. One vote per
  user and item: voting again replaces the earlier vote.
* **Votes and ranking** (``search_team_knowledge``): hybrid search over the items shared
  with the team gives each hit its fused score ``s`` (0..1, docs/search.md); the team score
  is ``s * (1 + 0.1 * clamp(net, -5, +5))`` where ``net`` is the sum of the votes of the
  team's *current members* on that item (votes of people outside the team never count
  there). So each net vote moves an item by 10% of its score, at most +-50%.

Records (the storage's records API; ``project`` is the key each collection is listed by):

============== ====================== ============ ==========================================
collection     id                     project      data
============== ====================== ============ ==========================================
teams          team name              None         members, projects, created_by, description
team_shares    ``["team", "item"]``   team name    team, item_id, shared_by, kind, project
item_votes     ``["item", "user"]``   item id      item_id, user, vote
============== ====================== ============ ==========================================
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from session_buddy.adapters.storage._base import (
    ItemFilter,
    MemoryItem,
    Record,
    StorageBase,
    check_text,
    utcnow,
)
from session_buddy.core.access import SHARES, TEAMS, Visibility
from session_buddy.core.memory import MemoryService
from session_buddy.core.users import owner_of, resolve_user_argument
from session_buddy.errors import NotFound, ValidationError
from session_buddy.search import hybrid
from session_buddy.search.pipeline import Candidate, Rescore, SearchHit, SearchRequest, TeamFacts
from session_buddy.settings import SessionBuddySettings

VOTES = "item_votes"
SHAREABLE_KINDS = ("reflection", "insight")
#: each net vote changes a team-search score by this share of it
VOTE_STEP = 0.1
#: net votes beyond this count no further (so the factor stays within 0.5 .. 1.5)
VOTE_CAP = 5
MAX_NAME = 200
_ALL = 1_000_000


def vote_factor(net: int) -> float:
    """The multiplier of a team-search score for ``net`` votes."""
    return 1.0 + VOTE_STEP * max(-VOTE_CAP, min(VOTE_CAP, net))


def check_name(value: object, what: str) -> str:
    """A trimmed, non-empty name of at most MAX_NAME characters."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{what} must be a non-empty name")
    name = value.strip()
    check_text(name, 4 * MAX_NAME, what=what)
    if len(name) > MAX_NAME or any(ord(c) < 32 for c in name):
        raise ValidationError(
            f"{what} must be at most {MAX_NAME} characters without control characters"
        )
    return name


@dataclass
class TeamSearch:
    team: str
    user: str
    hits: list[SearchHit]  # with their TeamFacts (votes, author, shared_by)
    confidence: hybrid.Level
    mode: str
    degraded: str | None
    shared_items: int


class TeamService:
    def __init__(
        self, storage: StorageBase, memory: MemoryService, settings: SessionBuddySettings
    ) -> None:
        self.storage = storage
        self.memory = memory
        self.settings = settings
        #: let a ``user`` argument name someone else when the request is not authenticated
        #: (a trusted local setup, tests). Never applies to authenticated requests.
        self.allow_user_override = False
        # where there are teams, every memory search and lookup obeys the access rule (the
        # container gives the memory service one already; a library user may not have)
        if memory.visibility is None:
            memory.visibility = Visibility(storage, settings)
        self.visibility = memory.visibility

    @classmethod
    def from_container(cls, resolve: Callable[[type], Any]) -> TeamService:
        return cls(resolve(StorageBase), resolve(MemoryService), resolve(SessionBuddySettings))

    # -- identity and visibility -------------------------------------------------------------

    def user(self, given: str | None = None) -> str:
        """The acting user, checking a ``user`` argument against it."""
        return resolve_user_argument(given, self.settings, allow_override=self.allow_user_override)

    def owner(self, item: MemoryItem) -> str:
        return owner_of(item.author, self.settings)

    @staticmethod
    def _team_missing(name: str) -> NotFound:
        # One message for "no such team" and "not a member": nothing can be inferred.
        return NotFound(f"no team {name!r} among the teams you belong to")

    @staticmethod
    def _item_missing(item_id: str) -> NotFound:
        return NotFound(f"no memory item with id {item_id!r} that you can see")

    async def _team(self, name: object, user: str) -> Record:
        """The team, when ``user`` is a member; else the same NotFound as a missing team."""
        if not isinstance(name, str) or not name.strip():
            raise ValidationError("team must be a non-empty name")
        record = await self.storage.get_record(TEAMS, name.strip())
        if record is None or user not in record.data.get("members", []):
            raise self._team_missing(name.strip())
        return record

    async def _shares(self, team: str) -> list[Record]:
        return await self.storage.list_records(SHARES, project=team, limit=_ALL)

    async def _modify(self, team: str, change: Callable[[Record | None], Record | None]) -> Record:
        """Change a team's record as one step (members added by two services at once are
        both kept); clears the visibility cache."""
        record = await self.storage.modify_record(TEAMS, team, change)
        self.visibility.forget()
        assert record is not None  # every change here writes, or raises
        return record

    def _members_change(
        self, team: str, actor: str, edit: Callable[[Record, list[str]], bool]
    ) -> Callable[[Record | None], Record | None]:
        """A change of the team's members by ``actor`` (who must be one): ``edit`` changes
        the list in place and says whether anything changed."""

        def change(current: Record | None) -> Record | None:
            if current is None or actor not in current.data.get("members", []):
                raise self._team_missing(team)
            members = list(current.data.get("members", []))
            if not edit(current, members):
                return None
            current.data["members"] = members
            current.updated_at = utcnow()
            return current

        return change

    async def _put(self, record: Record) -> None:
        await self.storage.put_record(record)
        self.visibility.forget()

    async def _visible_item(self, item_id: object, user: str) -> MemoryItem:
        if not isinstance(item_id, str) or not item_id.strip():
            raise ValidationError("id must be a memory item id")
        item_id = item_id.strip()
        found = await self.storage.get_items([item_id])
        if not found:
            raise self._item_missing(item_id)
        item = found[0]
        if self.owner(item) != user and item.id not in await self.visibility.shared_ids(user):
            raise self._item_missing(item_id)
        return item

    # -- teams -------------------------------------------------------------------------------

    async def create_team(
        self,
        name: str,
        members: Iterable[str] = (),
        projects: Iterable[str] = (),
        description: str | None = None,
    ) -> dict[str, Any]:
        """Create a team; the acting user is its first member."""
        creator = self.user()
        team = check_name(name, "team name")
        people = [creator] + [check_name(m, "a member") for m in members]
        names = [check_name(p, "a project") for p in projects]
        if description is not None:
            check_text(description, 64 * 1024, what="description")
        now = utcnow()
        record = Record(
            collection=TEAMS,
            id=team,
            data={
                "members": list(dict.fromkeys(people)),
                "projects": list(dict.fromkeys(names)),
                "created_by": creator,
                "description": description,
            },
            created_at=now,
            updated_at=now,
        )

        def create(current: Record | None) -> Record:
            if current is not None:  # also when another service created it a moment ago
                raise ValidationError(f"the team name {team!r} is taken; choose another name")
            return record

        await self._modify(team, create)
        return self._team_view(record)

    @staticmethod
    def _team_view(record: Record) -> dict[str, Any]:
        return {
            "name": record.id,
            "members": list(record.data.get("members", [])),
            "projects": list(record.data.get("projects", [])),
            "created_by": record.data.get("created_by"),
            "description": record.data.get("description"),
            "created_at": record.created_at.isoformat(),
        }

    async def add_team_member(self, team: str, user: str) -> dict[str, Any]:
        """Add ``user`` to ``team``; the acting user must be a member."""
        actor = self.user()
        new = check_name(user, "user")
        name = (await self._team(team, actor)).id
        added = False

        def add(record: Record, members: list[str]) -> bool:
            nonlocal added
            added = new not in members
            if added:
                members.append(new)
            return added

        record = await self._modify(name, self._members_change(name, actor, add))
        return {**self._team_view(record), "added": added, "user": new}

    async def remove_team_member(self, team: str, user: str) -> dict[str, Any]:
        """Remove ``user`` from ``team``. A member may leave (remove themselves); removing
        someone else is for the team's creator. The last member cannot leave: nobody could
        see the team again. What the user shared stays shared; their votes stop counting."""
        actor = self.user()
        gone = check_name(user, "user")
        name = (await self._team(team, actor)).id
        removed = False

        def remove(record: Record, members: list[str]) -> bool:
            nonlocal removed
            if gone != actor and actor != record.data.get("created_by"):
                raise ValidationError(
                    f"only the team's creator ({record.data.get('created_by')}) can remove "
                    "another member; a member can remove themselves (leave the team)"
                )
            removed = gone in members
            if removed:
                if len(members) == 1:
                    raise ValidationError(
                        f"{gone} is the last member of {record.id!r}; a team without members "
                        "could never be seen again, so the last member cannot leave"
                    )
                members.remove(gone)
            return removed

        record = await self._modify(name, self._members_change(name, actor, remove))
        return {**self._team_view(record), "removed": removed, "user": gone}

    async def list_teams(self) -> list[dict[str, Any]]:
        """The teams the acting user belongs to."""
        return [self._team_view(t) for t in await self.visibility.teams_of(self.user())]

    # -- sharing and votes -------------------------------------------------------------------

    async def share_reflection(self, item_id: str, team: str) -> dict[str, Any]:
        """Share one of the acting user's reflections (or insights) with a team of theirs."""
        actor = self.user()
        record = await self._team(team, actor)
        item = await self._visible_item(item_id, actor)
        if self.owner(item) != actor:
            raise ValidationError(
                f"item {item.id!r} was shared with you by its author; only the author "
                f"({self.owner(item)}) can share it with other teams"
            )
        if item.kind not in SHAREABLE_KINDS:
            raise ValidationError(
                f"item {item.id!r} is a {item.kind}; only reflections and insights can be shared"
            )
        key = json.dumps([record.id, item.id])
        existing = await self.storage.get_record(SHARES, key)
        if existing is None:
            await self._put(
                Record(
                    collection=SHARES,
                    id=key,
                    project=record.id,
                    data={
                        "team": record.id,
                        "item_id": item.id,
                        "shared_by": actor,
                        "kind": item.kind,
                        "project": item.project,
                    },
                )
            )
        return {"id": item.id, "team": record.id, "shared": existing is None}

    async def unshare_reflection(self, item_id: str, team: str) -> dict[str, Any]:
        """Withdraw an item from a team: its author or the member who shared it may (a
        member of the team). The team's votes on it are kept, should it be shared again."""
        actor = self.user()
        record = await self._team(team, actor)
        item = await self._visible_item(item_id, actor)
        key = json.dumps([record.id, item.id])
        existing = await self.storage.get_record(SHARES, key)
        if existing is not None:
            if actor not in (self.owner(item), existing.data.get("shared_by")):
                raise ValidationError(
                    f"item {item.id!r} was shared by {existing.data.get('shared_by')}; only "
                    f"they or its author ({self.owner(item)}) can withdraw it"
                )
            await self.storage.delete_record(SHARES, key)
            self.visibility.forget()
        return {"id": item.id, "team": record.id, "unshared": existing is not None}

    async def vote_on_reflection(
        self, item_id: str, vote: int = 1, user: str | None = None
    ) -> dict[str, Any]:
        """Vote +1 or -1 on an item shared with one of the user's teams (one vote per user:
        voting again replaces the earlier vote)."""
        voter = self.user(user)
        if isinstance(vote, bool) or vote not in (1, -1):
            raise ValidationError(f"vote must be +1 or -1, not {vote!r}")
        item = await self._visible_item(item_id, voter)
        if item.id not in await self.visibility.shared_ids(voter):
            raise ValidationError(
                f"item {item.id!r} is not shared with any team of yours; votes count in team "
                "search only, so share it first (share_reflection)"
            )
        key = json.dumps([item.id, voter])
        previous: Record | None = None

        def cast(current: Record | None) -> Record:
            nonlocal previous
            previous = current
            now = utcnow()
            return Record(
                collection=VOTES,
                id=key,
                project=item.id,
                data={"item_id": item.id, "user": voter, "vote": int(vote)},
                created_at=current.created_at if current else now,
                updated_at=now,
            )

        await self.storage.modify_record(VOTES, key, cast)
        return {
            "id": item.id,
            "user": voter,
            "vote": int(vote),
            "previous": previous.data.get("vote") if previous else None,
            "replaced": previous is not None,
        }

    async def _votes(self, item_ids: Iterable[str], members: set[str]) -> dict[str, dict[str, int]]:
        """item id -> (user -> vote) on these items, for the given members only: one read
        of the votes for all the items, never one per item."""
        wanted = set(item_ids)
        out: dict[str, dict[str, int]] = {i: {} for i in wanted}
        for r in await self.storage.list_records(VOTES, limit=_ALL):
            item_id, user = r.data.get("item_id"), r.data.get("user")
            if item_id in wanted and user in members:
                out[item_id][user] = int(r.data.get("vote", 0))
        return out

    # -- search and statistics ---------------------------------------------------------------

    async def search_team_knowledge(
        self, query: str, team: str, user: str | None = None, limit: int = 10
    ) -> TeamSearch:
        """Search the items shared with ``team``, ranked by hybrid score and members' votes."""
        who = self.user(user)
        if not isinstance(query, str) or not query.strip():
            raise ValidationError("query is empty; give words to search for")
        if not 1 <= limit <= 100:
            raise ValidationError(f"limit must be between 1 and 100, not {limit}")
        record = await self._team(team, who)
        members = set(record.data.get("members", []))
        shares = {r.data["item_id"]: r for r in await self._shares(record.id)}
        if not shares:
            return TeamSearch(record.id, who, [], "none", "hybrid", None, 0)
        found = await self.memory.pipeline.run(
            SearchRequest(
                query,
                # the same hybrid ranking as every search, restricted to the team's shares
                ItemFilter(ids=set(shares)),
                limit=limit,
                rescore=self._vote_rescore(who, members, shares),
            )
        )
        return TeamSearch(
            team=record.id,
            user=who,
            hits=found.hits,
            confidence=found.confidence,
            mode=found.mode,
            degraded=found.degraded,
            shared_items=len(shares),
        )

    def _vote_rescore(self, who: str, members: set[str], shares: dict[str, Record]) -> Rescore:
        """The rescoring step of team search: fused score x the members' vote factor."""

        async def rescore(candidates: list[Candidate]) -> list[Candidate]:
            votes = await self._votes((c.id for c in candidates), members)
            for c in candidates:
                cast = votes[c.id]
                c.score = c.fused_score * vote_factor(sum(cast.values()))
                c.team = TeamFacts(
                    votes_up=sum(1 for v in cast.values() if v > 0),
                    votes_down=sum(1 for v in cast.values() if v < 0),
                    net_votes=sum(cast.values()),
                    your_vote=cast.get(who),
                    author=owner_of(c.author, self.settings),
                    shared_by=shares[c.id].data.get("shared_by"),
                )
            candidates.sort(key=lambda c: (-c.score, c.id))
            return candidates

        return rescore

    async def get_team_statistics(self, team: str) -> dict[str, Any]:
        """Members, projects, shared items and votes of a team (members only)."""
        who = self.user()
        record = await self._team(team, who)
        members = set(record.data.get("members", []))
        shares = await self._shares(record.id)
        items = {i.id: i for i in await self.storage.get_items([s.data["item_id"] for s in shares])}
        by_kind: Counter[str] = Counter()
        by_project: Counter[str] = Counter()
        by_member: Counter[str] = Counter()
        votes = await self._votes((s.data["item_id"] for s in shares), members)
        up = down = 0
        voters: set[str] = set()
        ranked: list[tuple[int, str]] = []
        for share in shares:
            item = items.get(share.data["item_id"])
            if item is None:  # deleted since it was shared
                continue
            by_kind[item.kind] += 1
            by_project[item.project or "(none)"] += 1
            by_member[share.data.get("shared_by") or self.owner(item)] += 1
            cast = votes[item.id]
            up += sum(1 for v in cast.values() if v > 0)
            down += sum(1 for v in cast.values() if v < 0)
            voters.update(cast)
            ranked.append((sum(cast.values()), item.id))
        ranked.sort(key=lambda r: (-r[0], r[1]))
        return {
            **self._team_view(record),
            "member_count": len(members),
            "shared_items": sum(by_kind.values()),
            "by_kind": dict(by_kind),
            "by_project": dict(by_project),
            "shared_by_member": dict(by_member),
            "votes": {"up": up, "down": down, "voters": len(voters)},
            "top_items": [
                {
                    "id": item_id,
                    "net_votes": net,
                    "project": items[item_id].project,
                    "excerpt": items[item_id].content[:200],
                }
                for net, item_id in ranked[:5]
            ],
        }
