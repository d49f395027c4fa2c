"""PostHog's Django cache writer for one team, reproduced from its source.

Reads a team's rows through psycopg2 (jsonb arrives through json.loads, as Django's
JSONField reads it) and prints, one per line, what PostHog stores for it:

    flags.json                the /flags service cache (flags_cache.py)
    flags_with_cohorts.json   the SDK definitions (local_evaluation.py)

each as json.dumps(payload, sort_keys=True), then the ETag of each
(sha256(json)[:16]). Usage: posthog_writer.py DSN CONTRACT TEAM_ID..., CONTRACT 2026-02
(PostHog as of the February 2026 incident) or 2026-09 (the newest); four lines per
team, in the order given.

The rules follow PostHog's code: MinimalFeatureFlagSerializer /
EvaluationFeatureFlagSerializer fields, FeatureFlag.get_filters(), get_cohort_ids(),
Cohort.properties with Filter/PropertyMixin, Property and PropertyGroup, the Kahn
dependency stages, the referenced-cohort walk and _apply_flag_dependency_transformation.
Where PostHog leaves an order to the database, flags come by key and cohorts by id.
"""

import hashlib
import json
import sys

import psycopg2

# --- Property and PropertyGroup (posthog/models/property/property.py) -----------------

VALIDATE_PROP_TYPES = {
    "event": ["key", "value"], "event_metadata": ["key", "value"], "person": ["key", "value"],
    "data_warehouse": ["key", "value"], "data_warehouse_person_property": ["key", "value"],
    "error_tracking_issue": ["key", "value"], "cohort": ["key", "value"], "element": ["key", "value"],
    "static-cohort": ["key", "value"], "dynamic-cohort": ["key", "value"], "precalculated-cohort": ["key", "value"],
    "group": ["key", "value", "group_type_index"], "recording": ["key", "value"], "log_entry": ["key", "value"],
    "log": ["key", "value"], "flag": ["key", "value"], "revenue_analytics": ["key", "value"],
    "behavioral": ["key", "value"], "session": ["key", "value"], "hogql": ["key"],
}
BEHAVIORAL = {
    "performed_event": ["key", "value", "event_type"],
    "performed_event_multiple": ["key", "value", "event_type", "operator_value"],
    "performed_event_first_time": ["key", "value", "event_type", "time_value", "time_interval"],
    "performed_event_sequence": ["key", "value", "event_type", "time_value", "time_interval", "seq_event_type",
                                 "seq_event", "seq_time_value", "seq_time_interval"],
    "performed_event_regularly": ["key", "value", "event_type", "time_value", "time_interval", "operator_value",
                                  "min_periods", "total_periods"],
    "stopped_performing_event": ["key", "value", "event_type", "time_value", "time_interval", "seq_time_value",
                                 "seq_time_interval"],
    "restarted_performing_event": ["key", "value", "event_type", "time_value", "time_interval", "seq_time_value",
                                   "seq_time_interval"],
}
CONDITIONAL = {"performed_event": [{"time_value", "time_interval"}, {"explicit_datetime"}],
               "performed_event_multiple": [{"time_value", "time_interval"}, {"explicit_datetime"}]}


class Invalid(Exception):
    """A cohort definition PostHog cannot parse."""


def str_to_bool(value):
    if not value:
        return False
    return str(value).lower() in ("y", "yes", "t", "true", "on", "1")


def validate_group_type_index(value):
    if value is not None:
        try:
            value = int(value)
        except Exception:
            raise ValueError("group_type_index")
        if not (0 <= value < 5):
            raise ValueError("group_type_index")
    return value


class Property:
    def __init__(self, key, value=None, operator=None, type=None, group_type_index=None, event_type=None,
                 operator_value=None, time_value=None, time_interval=None, explicit_datetime=None,
                 total_periods=None, min_periods=None, seq_event_type=None, seq_event=None, seq_time_value=None,
                 seq_time_interval=None, negation=None, event_filters=None, bytecode_generation=False, **kwargs):
        self.key = key
        self.operator = operator
        self.type = type if type else "event"
        self.group_type_index = validate_group_type_index(group_type_index)
        self.event_type = event_type
        self.operator_value = operator_value
        self.time_value = time_value
        self.time_interval = time_interval
        self.explicit_datetime = explicit_datetime
        self.total_periods = total_periods
        self.min_periods = min_periods
        self.seq_event_type = seq_event_type
        self.seq_event = seq_event
        self.seq_time_value = seq_time_value
        self.seq_time_interval = seq_time_interval
        self.negation = None if negation is None else str_to_bool(negation)
        self.event_filters = event_filters
        self.bytecode_generation = bytecode_generation
        if value is None and self.operator in ["is_set", "is_not_set"]:
            self.value = self.operator
        elif self.type == "hogql":
            pass
        elif value is None:
            raise ValueError("value")
        else:
            self.value = value
        if self.type not in VALIDATE_PROP_TYPES:
            raise ValueError("type")
        for attr in VALIDATE_PROP_TYPES[self.type]:
            if getattr(self, attr, None) is None:
                raise ValueError(attr)
        if self.type == "behavioral":
            for attr in BEHAVIORAL[self.value]:
                if getattr(self, attr, None) is None:
                    raise ValueError(attr)
            if not self.bytecode_generation and self.value in CONDITIONAL:
                if not any(all(getattr(self, a, None) is not None for a in attrs) for attrs in CONDITIONAL[self.value]):
                    raise ValueError("conditional")

    def to_dict(self):
        return {k: v for k, v in vars(self).items() if v is not None and k != "bytecode_generation"}


class PropertyGroup:
    def __init__(self, type, values):
        self.type = type
        self.values = values

    def to_dict(self):
        if not self.values:
            return {}
        return {"type": self.type, "values": [v.to_dict() for v in self.values]}

    def flat(self):
        for v in self.values:
            if isinstance(v, PropertyGroup):
                yield from v.flat()
            else:
                yield v


# --- PropertyMixin (posthog/models/filters/mixins/property.py) -------------------------

def parse_properties(properties):
    if isinstance(properties, list):
        out = []
        for p in properties:
            try:
                out.append(Property(**p))
            except Exception:
                continue
        return out
    if not properties:
        return []
    ret = []
    for key, value in properties.items():
        split = key.split("__")
        ret.append(Property(key=split[0], value=value, operator=split[1] if len(split) > 1 else None, type="event"))
    return ret


def parse_group(group):
    if group and "type" in group and "values" in group:
        kind = group["type"].upper()
        if kind not in ("AND", "OR"):
            raise Invalid("group type")
        return PropertyGroup(kind, parse_group_list(group["values"]))
    return PropertyGroup("AND", [])


def parse_group_list(items):
    if not items:
        return []
    groups = simple = False
    for p in items:
        if "type" in p and "values" in p:
            groups = True
        elif "key" in p:
            simple = True
        else:
            groups = True
    if groups and simple:
        raise Invalid("mixed")
    if groups:
        return [parse_group(g) for g in items]
    return parse_properties(items)


def parse_data(props):
    if isinstance(props, str):
        try:
            props = json.loads(props)
        except json.JSONDecodeError:
            raise Invalid("unparsable")
    if isinstance(props, dict) and "type" in props and "values" in props:
        return parse_group(props)
    return PropertyGroup("AND", parse_properties(props))


def cohort_properties(filters, groups):
    """Cohort.properties, the legacy groups repaired in place as PostHog does."""
    if filters:
        dict(filters)  # {**self.filters} needs a mapping
        return parse_data(filters.get("properties"))
    if groups:
        out = []
        for group in groups:
            if group.get("properties"):
                props = group.get("properties")
                if isinstance(props, list):
                    for prop in props:
                        if prop.get("type", "event") == "event":
                            prop["type"] = "person"
                elif isinstance(props, dict) and "type" not in props and "values" not in props:
                    group["properties"] = [{"key": k, "value": v, "type": "person"} for k, v in props.items()]
                out.append(parse_data(group["properties"]))
            elif group.get("action_id") or group.get("event_id"):
                key = group.get("action_id") or group.get("event_id")
                event_type = "actions" if group.get("action_id") else "events"
                try:
                    count = max(0, int(group.get("count") or 0))
                except ValueError:
                    count = 0
                out.append(PropertyGroup("AND", [Property(
                    key=key, type="behavioral", value="performed_event_multiple" if count else "performed_event",
                    event_type=event_type, time_interval="day", time_value=group.get("days") or 365,
                    operator=group.get("count_operator"), operator_value=count)]))
            else:
                return PropertyGroup("AND", [])
        return PropertyGroup("OR", out)
    return PropertyGroup("AND", [])


def properties_or_none(c):
    try:
        return cohort_properties(c["filters"], c["groups"])
    except Exception:
        return None


# --- rows ------------------------------------------------------------------------------

FLAG_COLUMNS = ["id", "team_id", "key", "name", "filters", "active", "ensure_experience_continuity",
                "has_encrypted_payloads", "is_remote_configuration", "version", "evaluation_runtime",
                "bucketing_identifier", "rollout_percentage"]
COHORT_COLUMNS = ["id", "team_id", "name", "description", "deleted", "is_static", "filters", "query", "groups",
                  "version", "pending_version", "count", "is_calculating", "errors_calculating", "created_by_id",
                  "cohort_type", "last_backfill_person_properties_at", "last_backfill_events_at"]


def load_flags(cur, team_id, where=""):
    cur.execute(
        "SELECT " + ", ".join("f." + c for c in FLAG_COLUMNS) + """,
            (SELECT array_agg(DISTINCT t.name) FROM posthog_featureflagevaluationtag et
             JOIN posthog_tag t ON t.id = et.tag_id WHERE et.feature_flag_id = f.id),
            EXISTS (SELECT 1 FROM posthog_experiment e WHERE e.feature_flag_id = f.id AND NOT e.deleted)
        FROM posthog_featureflag f WHERE f.team_id = %s AND NOT f.deleted """ + where + " ORDER BY f.key",
        (team_id,))
    out = []
    for row in cur.fetchall():
        f = dict(zip(FLAG_COLUMNS, row[:len(FLAG_COLUMNS)]))
        f["tags"] = row[len(FLAG_COLUMNS)] or []
        f["has_experiment"] = row[len(FLAG_COLUMNS) + 1]
        out.append(f)
    return out


def load_cohorts(cur, ids, team_id=None, project_id=None):
    if not ids:
        return []
    scope = "team_id = %s" if team_id is not None else "team_id IN (SELECT id FROM posthog_team WHERE project_id = %s)"
    cur.execute("SELECT " + ", ".join(COHORT_COLUMNS) + " FROM posthog_cohort WHERE id = ANY(%s) AND NOT deleted AND "
                + scope + " ORDER BY id", (list(ids), team_id if team_id is not None else project_id))
    return [dict(zip(COHORT_COLUMNS, r)) for r in cur.fetchall()]


def get_filters(f, contract):
    filters = f["filters"]
    if contract == "2026-02":
        if isinstance(filters, dict) and "groups" in filters:
            return filters
        return {"groups": [{"properties": filters.get("properties", []), "rollout_percentage": f["rollout_percentage"]}]}
    return filters


def serialize_flag(f, contract):
    out = {"id": f["id"], "team_id": f["team_id"], "name": f["name"], "key": f["key"],
           "filters": get_filters(f, contract), "deleted": False, "active": f["active"],
           "ensure_experience_continuity": f["ensure_experience_continuity"], "version": f["version"],
           "evaluation_runtime": f["evaluation_runtime"]}
    if contract == "2026-02":
        out["has_encrypted_payloads"] = f["has_encrypted_payloads"]
        out["evaluation_tags"] = f["tags"]
    else:
        out["bucketing_identifier"] = f["bucketing_identifier"]
        out["evaluation_contexts"] = f["tags"]
        out["has_experiment"] = f["has_experiment"]
    return out


# --- flags.json (flags_cache.py) -------------------------------------------------------

def direct_dependency_ids(flag):
    if not flag.get("active", True) or flag.get("deleted", False):
        return set()
    ids = set()
    for group in flag.get("filters", {}).get("groups") or []:
        for prop in group.get("properties") or []:
            if prop.get("type") == "flag":
                try:
                    ids.add(int(prop["key"]))
                except (ValueError, KeyError, TypeError):
                    continue
    return ids


def compute_flag_dependencies(flags):
    id_to_flag = {f["id"]: f for f in flags}
    direct = {fid: direct_dependency_ids(f) for fid, f in id_to_flag.items()}
    has_missing = {fid: any(d not in id_to_flag for d in deps) for fid, deps in direct.items()}
    in_degree = dict.fromkeys(id_to_flag, 0)
    reverse = {fid: set() for fid in id_to_flag}
    for fid, deps in direct.items():
        for d in deps:
            if d in id_to_flag:
                in_degree[fid] += 1
                reverse[d].add(fid)
    stages, transitive = [], {}
    queue = sorted(fid for fid, deg in in_degree.items() if deg == 0)
    while queue:
        for fid in queue:
            td = set()
            for d in direct[fid]:
                if d in id_to_flag:
                    td.add(d)
                    td.update(transitive[d])
                    if has_missing[d]:
                        has_missing[fid] = True
            transitive[fid] = td
        stages.append(queue)
        nxt = []
        for fid in queue:
            for dep in reverse[fid]:
                in_degree[dep] -= 1
                if in_degree[dep] == 0:
                    nxt.append(dep)
        queue = sorted(nxt)
    for fid, deg in in_degree.items():
        if deg > 0:
            has_missing[fid] = True
    return {"dependency_stages": stages,
            "flags_with_missing_deps": sorted(fid for fid, m in has_missing.items() if m),
            "transitive_deps": {str(fid): sorted(transitive.get(fid, set())) for fid in id_to_flag}}


def strict_cohort_deps(c, props):
    deps = set()
    for p in props.flat() if props is not None else []:
        if p.type == "cohort" and isinstance(getattr(p, "value", None), int) and p.value != c["id"]:
            deps.add(p.value)
    return deps


def isoformat(t):
    return t.isoformat() if t else None


def flags_cohorts(cur, team_id, flags):
    seeds = set()
    for f in flags:
        if not f.get("active", True):
            continue
        for group in f.get("filters", {}).get("groups") or []:
            for prop in group.get("properties") or []:
                if prop.get("type") == "cohort":
                    try:
                        seeds.add(int(prop["value"]))
                    except (ValueError, KeyError, TypeError):
                        continue
    all_ids, to_load, loaded = set(seeds), set(seeds), []
    depth = 0
    while to_load:
        if depth >= 20:
            break
        depth += 1
        nxt = set()
        for c in load_cohorts(cur, sorted(to_load), team_id=team_id):
            props = properties_or_none(c)  # repairs c["groups"] in place, as the real walk does
            loaded.append(c)
            for d in strict_cohort_deps(c, props):
                if d not in all_ids:
                    all_ids.add(d)
                    nxt.add(d)
        to_load = nxt
    return [{"id": c["id"], "name": c["name"], "description": c["description"], "team_id": c["team_id"],
             "deleted": c["deleted"], "filters": c["filters"], "query": c["query"], "version": c["version"],
             "pending_version": c["pending_version"], "count": c["count"], "is_calculating": c["is_calculating"],
             "is_static": c["is_static"], "errors_calculating": c["errors_calculating"], "groups": c["groups"],
             "created_by_id": c["created_by_id"], "cohort_type": c["cohort_type"],
             "last_backfill_person_properties_at": isoformat(c["last_backfill_person_properties_at"]),
             "last_backfill_events_at": isoformat(c["last_backfill_events_at"])} for c in loaded]


def flags_payload(cur, team_id, contract):
    if contract == "2026-02":
        flags = [serialize_flag(f, contract) for f in load_flags(cur, team_id, "AND f.active")]
        return {"flags": flags}
    flags = [serialize_flag(f, contract) for f in load_flags(cur, team_id, "AND f.has_encrypted_payloads IS NOT TRUE")]
    return {"flags": flags, "evaluation_metadata": compute_flag_dependencies(flags),
            "cohorts": flags_cohorts(cur, team_id, flags)}


# --- definitions (local_evaluation.py) -------------------------------------------------

def loose_cohort_refs(props):
    out = []
    for p in props.flat():
        if p.type == "cohort" and not isinstance(getattr(p, "value", None), list):
            try:
                out.append(int(p.value))
            except (ValueError, TypeError, AttributeError):
                continue
    return out


def definitions_payload(cur, team_id, project_id, contract):
    cur.execute("""SELECT DISTINCT id FROM (SELECT unnest(ARRAY[targeting_flag_id, internal_targeting_flag_id,
        internal_response_sampling_flag_id]) AS id FROM posthog_survey WHERE team_id = %s) s WHERE id IS NOT NULL""",
                (team_id,))
    survey_ids = {r[0] for r in cur.fetchall()}
    if contract == "2026-02":
        exclude = "AND NOT (COALESCE(f.is_remote_configuration, false) AND COALESCE(f.has_encrypted_payloads, false))"
    else:
        exclude = "AND f.has_encrypted_payloads IS NOT TRUE"
    flags = [f for f in load_flags(cur, team_id, exclude) if f["id"] not in survey_ids]

    cache = {}  # the walk's view of cohorts: id -> row with parsed properties, or None

    def cohort(cid):
        if cid not in cache:
            rows = load_cohorts(cur, [cid], project_id=project_id)
            cache[cid] = rows[0] if rows else None
            if rows:
                rows[0]["props"] = properties_or_none(rows[0])
        return cache[cid]

    def closure(cid):
        # get_all_cohort_dependencies: raises when a walked cohort cannot be parsed;
        # static cohorts end the walk.
        ids, stack = set(), [cid]
        while stack:
            x = stack.pop()
            if x in ids:
                continue
            c = cohort(x)
            if c is None:
                continue
            ids.add(x)
            if c["is_static"]:
                continue
            if c["props"] is None:
                raise Invalid("cohort %d" % x)
            stack.extend(loose_cohort_refs(c["props"]))
        return ids

    flags_data, cohorts, id_to_key = [], {}, {}
    for f in flags:
        try:
            filters = get_filters(f, contract)
            cohort_ids = set()
            for condition in filters.get("groups", []) or []:
                for prop in condition.get("properties", []):
                    if prop.get("type") == "cohort":
                        cid = int(prop.get("value"))
                        c = cohort(cid)
                        if c is None or c["is_static"]:
                            continue
                        cohort_ids |= closure(cid)
            data = serialize_flag(f, contract)
            for cid in cohort_ids:
                c = cohort(cid)
                if str(cid) not in cohorts and c is not None and not c["is_static"]:
                    cohorts[str(cid)] = c["props"].to_dict()
            flags_data.append(data)
            id_to_key[str(f["id"])] = f["key"]
        except Exception:
            continue

    # _apply_flag_dependency_transformation
    def flag_props(filters):
        return [p for g in (filters or {}).get("groups") or [] for p in g.get("properties") or [] if p.get("type") == "flag"]

    for fd in flags_data:
        for p in flag_props(fd["filters"]):
            ref = p.get("key", "")
            p["key"] = id_to_key.get(ref, ref)
    by_key = {fd["key"]: fd for fd in flags_data}
    memo = {}

    def chain(key):
        if key in memo:
            return memo[key]
        fd = by_key.get(key)
        if fd and any(p["key"] == key for p in flag_props(fd["filters"])):
            memo[key] = []
            return []
        visited, temp, out = set(), set(), []

        def dfs(cur_key):
            if cur_key in temp:
                return False
            if cur_key in visited:
                return True
            temp.add(cur_key)
            if cur_key not in by_key:
                return False
            for p in flag_props(by_key[cur_key]["filters"]):
                d = p["key"]
                if d != cur_key:
                    if d not in by_key or not dfs(d):
                        return False
            temp.remove(cur_key)
            visited.add(cur_key)
            out.append(cur_key)
            return True

        memo[key] = out if dfs(key) else []
        return memo[key]

    for fd in flags_data:
        for p in flag_props(fd["filters"]):
            p["dependency_chain"] = chain(p["key"])

    cur.execute("SELECT group_type_index, group_type FROM posthog_grouptypemapping WHERE project_id = %s", (project_id,))
    out = {"flags": flags_data, "group_type_mapping": {str(i): t for i, t in cur.fetchall()}, "cohorts": cohorts}
    if contract != "2026-02":
        cur.execute("SELECT minimal_flag_called_events, property_matching_version FROM feature_flags_teamfeatureflagsconfig WHERE team_id = %s", (team_id,))
        row = cur.fetchone() or (False, 1)
        out["minimal_flag_called_events"], out["property_matching_version"] = row[0], row[1]
    return out


def main():
    dsn, contract = sys.argv[1], sys.argv[2]
    conn = psycopg2.connect(dsn)
    conn.set_session(readonly=True)
    cur = conn.cursor()
    cur.execute("SET TIME ZONE 'UTC'")
    for team_id in map(int, sys.argv[3:]):
        cur.execute("SELECT project_id FROM posthog_team WHERE id = %s", (team_id,))
        project_id = cur.fetchone()[0]
        for payload in (flags_payload(cur, team_id, contract), definitions_payload(cur, team_id, project_id, contract)):
            text = json.dumps(payload, sort_keys=True)
            sys.stdout.write(text + "\n")
            sys.stdout.write(hashlib.sha256(text.encode("utf-8")).hexdigest()[:16] + "\n")


if __name__ == "__main__":
    main()
