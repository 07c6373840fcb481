"""The baseline a user would otherwise write: one DuckDB SQL query per endpoint.

Each endpoint's plan (with everything it depends on) is translated by hand-written rules
into a single query over the events and people tables, and the queries are run one by one.
This is the benchmark's comparison point (evaluating the same endpoints one by one as SQL
in DuckDB), so the translation is deliberately the straightforward one a careful analyst
would write, not a clever one:

* a rule is ``SOURCE IN (...)`` and, per tested column, ``col LIKE 'E11%'`` for prefixes,
  ``col IN (...)`` for exact codes and ``regexp_matches(col, '^(?:re)')`` for regexes,
  ``AND NOT (...)`` for excepts; one scan of the events per rule;
* FinnGen ``%`` (mode) is a GROUP BY with a window sum, ``min`` a GROUP BY ... HAVING,
  ``needs other`` an IN over the other rules' people, ``when`` a WHERE on EVENT_AGE /
  year(APPROX_EVENT_DAY) / the urgency of the visit (person + INDEX);
* ``include`` is a UNION with the included endpoints' case events, each computed by its
  own CTEs (so a chain of includes is re-evaluated inside every query that needs it);
* sex, ``require`` and the control rules are joins with the people table and with the
  dependencies' case tables.

The meaning is the one docs/language.md gives; tests/test_benchmarks.py checks the
translation against the reference engine. Regexes are run by RE2, which has no lookaround or backreferences:
`endpoint_sql` refuses such endpoints (`UnsupportedSQL`) instead of changing their meaning.

>>> from endpointc.compiler import compile_text
>>> program, _ = compile_text('endpoint T2D { hospital icd10 E11 }')
>>> "LIKE 'E11%'" in endpoint_sql(program, "T2D")
True
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from endpointc.plan import (
    AllOf, AnyOf, Branch, Cmp, CodeSet, ColumnTest, Const, Count, EndpointPlan, EventField, FirstAge,
    FirstYear, IsCase, Negate, Program, RulePlan, cond_endpoints,
)

if TYPE_CHECKING:  # duckdb is a benchmark-only dependency: imported where a query runs
    import duckdb
    import polars as pl

__all__ = ["UnsupportedSQL", "endpoint_sql", "connect", "run_endpoint", "evaluate_duckdb",
           "LONG_COLUMNS"]

LONG_COLUMNS = ("FINNGENID", "STATUS", "AGE", "YEAR", "NEVT")

# Constructs RE2 (DuckDB's regex library) rejects or reads differently from Python's re.
_RE2_UNSUPPORTED = re.compile(r"\(\?[=!<]|\\[1-9]|\(\?P=|\\Z|\[\[|&&|--|~~")
_CMP_SQL = {"<": "<", "<=": "<=", ">": ">", ">=": ">=", "==": "=", "!=": "<>"}


class UnsupportedSQL(ValueError):
    """An endpoint whose meaning the SQL translation cannot keep (e.g. a lookahead regex)."""


# -- literals and code sets -------------------------------------------------------------

def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _num(value: float) -> str:
    return f"CAST({float(value)!r} AS DOUBLE)"


def _like(column: str, prefix: str) -> str:
    if any(c in prefix for c in "%_\\"):
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return f"{column} LIKE {_lit(escaped + '%')} ESCAPE '\\'"
    return f"{column} LIKE {_lit(prefix + '%')}"


def _codeset(column: str, codes: CodeSet) -> str:
    """A boolean that is never NULL: a missing code is in no set."""
    if "" in codes.prefixes:
        return f"({column} IS NOT NULL)"
    alts = [_like(column, p) for p in codes.prefixes]
    if codes.exact:
        alts.append(f"{column} IN ({', '.join(map(_lit, codes.exact))})")
    for pattern in codes.regexes:
        if _RE2_UNSUPPORTED.search(pattern):
            raise UnsupportedSQL(f"regex {pattern!r} needs a construct RE2 does not have")
        alts.append(f"regexp_matches({column}, {_lit('^(?:' + pattern + ')')})")
    if not alts:
        return "false"
    return f"coalesce({' OR '.join(alts)}, false)"


def _test(test: ColumnTest) -> str:
    return _codeset(f"e.{test.column}", test.codes)


def _branch(branch: Branch) -> str:
    if not branch.sources:
        return "false"
    parts = [f"coalesce(e.SOURCE IN ({', '.join(map(_lit, branch.sources))}), false)"]
    parts += [_test(t) for t in branch.tests]
    for conjunction in branch.excepts:
        parts.append(f"NOT ({' AND '.join(_test(t) for t in conjunction) or 'true'})")
    return "(" + " AND ".join(parts) + ")"


# -- conditions -----------------------------------------------------------------------

@dataclass(frozen=True)
class _Scope:
    """How a condition reads its operands: event columns (for `when`) or the case table
    alias of each endpoint it names (for `require` and the control rules)."""

    event: bool
    aliases: dict[str, str] | None = None


def _value(node, scope: _Scope) -> str:
    if isinstance(node, Const):
        return _num(node.value)
    if isinstance(node, EventField):
        _need(scope.event, node)
        if node.name == "age":
            return "EVENT_AGE"
        if node.name == "year":
            return "CAST(year(APPROX_EVENT_DAY) AS DOUBLE)"
        raise UnsupportedSQL(f"the event field {node.name} is not a number")
    if isinstance(node, Count):
        return f"CAST(coalesce({_alias(node, scope)}.NEVT, 0) AS DOUBLE)"
    if isinstance(node, FirstAge):
        return f"{_alias(node, scope)}.AGE"
    if isinstance(node, FirstYear):
        return f"CAST({_alias(node, scope)}.YEAR AS DOUBLE)"
    raise UnsupportedSQL(f"{type(node).__name__} has no SQL translation here (dates and time relations "
                         "are not translated)")


def _bool(node, scope: _Scope) -> str:
    """Plain two-valued logic: every boolean produced here is TRUE or FALSE, never NULL."""
    if isinstance(node, EventField) and node.name == "emergency":
        _need(scope.event, node)
        return "EMERG"
    if isinstance(node, IsCase):
        return f"({_alias(node, scope)}.FINNGENID IS NOT NULL)"
    if isinstance(node, Cmp):
        op = _CMP_SQL[node.op]
        return f"coalesce({_value(node.left, scope)} {op} {_value(node.right, scope)}, false)"
    if isinstance(node, AllOf):
        return "(" + " AND ".join(_bool(a, scope) for a in node.args) + ")" if node.args else "true"
    if isinstance(node, AnyOf):
        return "(" + " OR ".join(_bool(a, scope) for a in node.args) + ")" if node.args else "false"
    if isinstance(node, Negate):
        return f"(NOT {_bool(node.arg, scope)})"
    raise UnsupportedSQL(f"{type(node).__name__} has no SQL translation here (dates and time relations "
                         "are not translated)")


def _need(event: bool, node) -> None:
    if not event:
        raise UnsupportedSQL(f"{type(node).__name__} is an event field, not a person condition")


def _alias(node, scope: _Scope) -> str:
    if scope.event or scope.aliases is None:
        raise UnsupportedSQL(f"{type(node).__name__} is a person condition, not an event field")
    return scope.aliases[node.endpoint]


def _person_joins(cond, on: str, names: dict[str, str]) -> tuple[str, dict[str, str]]:
    """LEFT JOINs of the case tables a person condition reads, and their aliases."""
    aliases, joins = {}, []
    for j, name in enumerate(cond_endpoints(cond)):
        alias = f"d{j}"
        aliases[name] = alias
        joins.append(f"LEFT JOIN {names[name]}_cases {alias} ON {alias}.FINNGENID = {on}")
    return " ".join(joins), aliases


# -- one endpoint -----------------------------------------------------------------------

class _Writer:
    """CTEs for every endpoint of a (sub)program, in dependency order."""

    def __init__(self, program: Program):
        self.program = program
        self.emergency = any(ep.uses_emergency for ep in program.endpoints)
        self.names = {ep.name: f"e{i}" for i, ep in enumerate(program.endpoints)}
        self.included = {x for ep in program.endpoints for x in ep.includes}
        self.cols = "_row, FINNGENID, EVENT_AGE, APPROX_EVENT_DAY" + (", EMERG" if self.emergency else "")
        self.ctes: list[tuple[str, str]] = []
        if self.emergency:
            # A visit (person and INDEX, whatever the SOURCE) is urgent when any of its rows
            # says so (CODE9 == "1"); a row without INDEX is its own visit.
            self.ctes.append(("urgent", (
                'SELECT DISTINCT FINNGENID, "INDEX" FROM ev '
                "WHERE CODE9 = '1' AND \"INDEX\" IS NOT NULL")))

    def add(self, name: str, body: str) -> str:
        self.ctes.append((name, body))
        return name

    def empty(self) -> str:
        emerg = ", false AS EMERG" if self.emergency else ""
        return f"SELECT _row, FINNGENID, EVENT_AGE, APPROX_EVENT_DAY{emerg} FROM ev WHERE false"

    def rule(self, p: str, rule: RulePlan, when: str | None) -> str:
        """The rule's own events after mode, `when` and `min` (needs-other comes later)."""
        r = f"{p}_r{rule.index}"
        wanted = "e._row, e.FINNGENID, e.EVENT_AGE, e.APPROX_EVENT_DAY"
        source = "ev e"
        if rule.mode:
            wanted += ", e.CODE1"
        if self.emergency:
            wanted += (", (coalesce(e.CODE9 = '1', false) OR u.FINNGENID IS NOT NULL) AS EMERG")
            source += ' LEFT JOIN urgent u ON u.FINNGENID = e.FINNGENID AND u."INDEX" = e."INDEX"'
        where = " OR ".join(_branch(b) for b in rule.branches) or "false"
        sel = self.add(f"{r}_s", f"SELECT {wanted} FROM {source} WHERE {where}")
        if rule.mode:
            # the person's single most frequent CODE1 among codes sharing all but the last
            # character, with a share above one half (which makes it the single most frequent)
            winners = self.add(f"{r}_mode", (
                "SELECT FINNGENID, CODE1 FROM (SELECT FINNGENID, CODE1, count(*) AS n, "
                "sum(count(*)) OVER (PARTITION BY FINNGENID, substr(CODE1, 1, length(CODE1) - 1)) AS t "
                f"FROM {sel} WHERE CODE1 IS NOT NULL GROUP BY FINNGENID, CODE1) WHERE 2 * n > t"))
            sel = self.add(f"{r}_m", f"SELECT s.* FROM {sel} s SEMI JOIN {winners} w USING (FINNGENID, CODE1)")
        body = f"SELECT {self.cols} FROM {sel}" + (f" WHERE {when}" if when else "")
        kept = self.add(f"{r}_w", body)
        if rule.min_events > 1:
            kept = self.add(f"{r}_min", (
                f"SELECT * FROM {kept} WHERE FINNGENID IN (SELECT FINNGENID FROM {kept} "
                f"GROUP BY FINNGENID HAVING count(*) >= {rule.min_events})"))
        return kept

    def endpoint(self, ep: EndpointPlan) -> None:
        p = self.names[ep.name]
        when = _bool(ep.when, _Scope(event=True)) if ep.when is not None else None
        kept = {rule.index: self.rule(p, rule, when) for rule in ep.rules}
        finals = []
        for rule in ep.rules:
            if rule.needs_other:
                others = [kept[o.index] for o in ep.rules if o.index != rule.index]
                if others:
                    people = " UNION ".join(f"SELECT FINNGENID FROM {o}" for o in others)
                    finals.append(f"SELECT * FROM {kept[rule.index]} WHERE FINNGENID IN ({people})")
            else:
                finals.append(f"SELECT * FROM {kept[rule.index]}")
        for x in ep.includes:
            inc = f"SELECT {self.cols} FROM {self.names[x]}_ce"
            finals.append(inc + (f" WHERE {when}" if when else ""))
        # UNION (not UNION ALL): an event row selected twice is still one row
        events = self.add(f"{p}_ev", " UNION ".join(finals) if finals else self.empty())
        order = "ORDER BY EVENT_AGE NULLS LAST, APPROX_EVENT_DAY NULLS LAST"
        first = self.add(f"{p}_first", (
            f"SELECT FINNGENID, first(EVENT_AGE {order}) AS AGE, "
            f"CAST(first(year(APPROX_EVENT_DAY) {order}) AS INTEGER) AS YEAR, "
            f"CAST(count(*) AS BIGINT) AS NEVT FROM {events} GROUP BY FINNGENID"))
        conds = []
        if ep.sex is not None:
            conds.append(f"coalesce(p.SEX = {_lit(ep.sex)}, false)")
        joins = ""
        if ep.require is not None:
            joins, aliases = _person_joins(ep.require, "c.FINNGENID", self.names)
            conds.append(_bool(ep.require, _Scope(event=False, aliases=aliases)))
        self.add(f"{p}_cases", (
            f"SELECT c.FINNGENID, c.AGE, c.YEAR, c.NEVT FROM {first} c "
            f"JOIN people p ON p.FINNGENID = c.FINNGENID {joins}"
            + (f" WHERE {' AND '.join(conds)}" if conds else "")))
        if ep.name in self.included:
            self.add(f"{p}_ce", f"SELECT v.* FROM {events} v SEMI JOIN {p}_cases USING (FINNGENID)")

    def final(self, ep: EndpointPlan) -> str:
        p = self.names[ep.name]
        cases = f"SELECT FINNGENID, 'case' AS STATUS, AGE, YEAR, NEVT FROM {p}_cases"
        reasons = []
        joins = ""
        if ep.sex is not None:
            reasons.append(f"coalesce(p.SEX <> {_lit(ep.sex)}, true)")
        for name in ep.control_exclude:
            reasons.append(f"p.FINNGENID IN (SELECT FINNGENID FROM {self.names[name]}_cases)")
        if ep.control_require is not None:
            joins, aliases = _person_joins(ep.control_require, "p.FINNGENID", self.names)
            reasons.append(f"NOT {_bool(ep.control_require, _Scope(event=False, aliases=aliases))}")
        if not reasons:
            return cases
        return (
            f"{cases} UNION ALL SELECT p.FINNGENID, 'excluded' AS STATUS, CAST(NULL AS DOUBLE) AS AGE, "
            "CAST(NULL AS INTEGER) AS YEAR, CAST(NULL AS BIGINT) AS NEVT FROM people p "
            f"{joins} WHERE p.FINNGENID IS NOT NULL AND p.FINNGENID NOT IN (SELECT FINNGENID FROM {p}_cases) "
            f"AND ({' OR '.join(reasons)})")


def endpoint_sql(program: Program, name: str) -> str:
    """One SQL query giving `name`'s long rows (FINNGENID, STATUS, AGE, YEAR, NEVT) over the
    views ``ev`` (the events with a row number ``_row``) and ``people`` (see `connect`).

    Raises `UnsupportedSQL` when the endpoint, or one it depends on, cannot be translated.
    """
    sub = program.subset([name])
    for ep in sub.endpoints:
        # Spaced repeats and an endpoint reading its own candidate events have no query here.
        if any(rule.spacing is not None for rule in ep.rules) or ep.name in cond_endpoints(ep.require):
            raise UnsupportedSQL(f"{ep.name}: spaced repeats and self reference are not translated")
    writer = _Writer(sub)
    for ep in sub.endpoints:
        writer.endpoint(ep)
    ctes = ",\n".join(f"{n} AS ({body})" for n, body in writer.ctes)
    return f"WITH {ctes}\n{writer.final(sub.get(name))}"


# -- running ----------------------------------------------------------------------------

def connect(events: str | Path, people: str | Path, *, threads: int | None = None,
            memory_limit: str | None = None) -> "duckdb.DuckDBPyConnection":
    """An in-memory DuckDB with the views ``ev`` and ``people`` over two Parquet files (in
    the normalised schema of endpointc.registry), read in place by every query, as a user
    querying the registry files would. ``_row`` is the row's position in the events file.
    """
    import duckdb

    con = duckdb.connect(":memory:")
    if threads is not None:
        con.execute(f"SET threads = {int(threads)}")
    if memory_limit is not None:
        con.execute(f"SET memory_limit = {_lit(memory_limit)}")
    con.execute(
        "CREATE VIEW ev AS SELECT * EXCLUDE (file_row_number), file_row_number AS _row "
        f"FROM read_parquet({_lit(str(events))}, file_row_number = true)")
    con.execute(f"CREATE VIEW people AS SELECT * FROM read_parquet({_lit(str(people))})")
    return con


def run_endpoint(con: "duckdb.DuckDBPyConnection", program: Program, name: str,
                 out: str | Path) -> int:
    """Run one endpoint's query, writing its rows to the Parquet file `out` (as a user would
    keep the result); returns the number of rows written."""
    query = endpoint_sql(program, name)
    row = con.execute(f"COPY ({query}) TO {_lit(str(out))} (FORMAT parquet)").fetchone()
    return int(row[0]) if row else 0


def evaluate_duckdb(program: Program, events: "str | Path | pl.DataFrame",
                    people: "str | Path | pl.DataFrame", *, endpoints: Sequence[str] | None = None,
                    threads: int | None = None) -> "pl.DataFrame":
    """The long table (FINNGENID, ENDPOINT, STATUS, AGE, YEAR, NEVT) computed endpoint by
    endpoint in DuckDB, sorted like the engines' output; for tests and spot checks.
    DataFrames are written to Parquet in a temporary folder first."""
    import tempfile

    import polars as pl

    schema = {"FINNGENID": pl.String, "ENDPOINT": pl.String, "STATUS": pl.String,
              "AGE": pl.Float64, "YEAR": pl.Int32, "NEVT": pl.Int64}
    with tempfile.TemporaryDirectory(prefix="duckdb-baseline-") as tmp:
        folder = Path(tmp)
        if isinstance(events, pl.DataFrame):
            events.write_parquet(folder / "events.parquet")
            events = folder / "events.parquet"
        if isinstance(people, pl.DataFrame):
            people.write_parquet(folder / "people.parquet")
            people = folder / "people.parquet"
        con = connect(events, people, threads=threads)
        frames = []
        try:
            for i, name in enumerate(endpoints if endpoints is not None else program.names):
                out = folder / f"out{i}.parquet"
                run_endpoint(con, program, name, out)
                frames.append(pl.read_parquet(out).with_columns(pl.lit(name).alias("ENDPOINT")))
        finally:
            con.close()
    if not frames:
        return pl.DataFrame(schema=schema)
    return (pl.concat(frames, how="diagonal_relaxed")
            .select([pl.col(c).cast(t) for c, t in schema.items()])
            .sort("ENDPOINT", "FINNGENID"))
