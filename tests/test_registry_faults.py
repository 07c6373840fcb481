"""A matrix of malformed registries, each driven through ``load_registry``.

Every fault pins the diagnostic code and the key words of its message; the data carry
recognisable person-level values (``FG_SECRET_...`` ids, ``Z99SECRET`` codes, odd dates and
ages), and no diagnostic of any fault, message or hint, may show one of them. ``FAULTS``
is meant to be reused to drive the same files through the CLI.
"""

from __future__ import annotations

import gzip
import io
from dataclasses import dataclass
from pathlib import Path
import polars as pl
import pytest

import endpointc.registry as registry
from endpointc.diagnostics import Diagnostic
from endpointc.registry import RegistryError, load_registry

EVENT_HEADER = ["FINNGENID", "SOURCE", "EVENT_AGE", "APPROX_EVENT_DAY", "CODE1", "CODE2", "CODE3",
                "CODE4", "ICDVER", "CATEGORY", "INDEX"]
PEOPLE_HEADER = ["FINNGENID", "SEX", "APPROX_BIRTH_DATE", "FU_END_AGE", "DEATH"]
IDS = [f"FG_SECRET_{n:06d}" for n in (123, 4567, 89012, 345678)]
SOURCES = ["INPAT", "PURCH", "CANC", "OUTPAT"]
EVENTS = [[pid, SOURCES[i % 4], f"{41 + i}.173", f"1987-0{1 + i % 9}-1{i % 10}", f"Z99SECRET{i}", "NA",
           "N05BA77", "NA", "10", "0", f"IDX_SECRET_{i}"]
          for i, pid in enumerate(IDS * 3)]
PEOPLE = [[pid, sex, f"1931-0{1 + i}-2{i}", f"{88 + i}.417", str(i % 2)]
          for i, (pid, sex) in enumerate(zip(IDS, ["female", "male", "2", "1"]))]
# Values no diagnostic may show (sexes are left out: "female, male" is the expected-type text).
SECRETS = ("FG_SECRET", "SECRET", "N05BA77", "1987-0", "1931-0", ".173", ".417", "-3.25", "731.5",
           "2001-13-45", "31.12.1999", "Z99", "45,5", "FEMALE_X", "0.5")


def tsv(rows, header, sep="\t") -> str:
    return "".join(sep.join(r) + "\n" for r in ([header] if header else []) + list(rows))


def frame(rows, header) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=header, orient="row")


def with_column(rows, header, column, value, at=(0,)):
    """`rows` with `column` set to `value` in the rows at positions `at`."""
    k = header.index(column)
    return [[*r[:k], value, *r[k + 1:]] if i in at else list(r) for i, r in enumerate(rows)]


def without(rows, header, column):
    k = header.index(column)
    return [[*r[:k], *r[k + 1:]] for r in rows], [c for c in header if c != column]


def corrupt(data: bytes, at: float, size: int = 512) -> bytes:
    bad = bytearray(data)
    k = int(len(bad) * at)
    bad[k:k + size] = bytes((i * 37 + 11) % 256 for i in range(size))
    return bytes(bad)


def big_parquet() -> bytes:
    """A compressible events table whose code columns fill the later part of the file."""
    n = 50_000
    df = pl.DataFrame({
        "FINNGENID": [f"FG_SECRET_{i // 5:06d}" for i in range(n)], "SOURCE": ["INPAT"] * n,
        "EVENT_AGE": [str(40 + i % 50) for i in range(n)], "APPROX_EVENT_DAY": ["1987-02-03"] * n,
        "CODE1": [f"Z99{(i * 7919) % 997:03d}" for i in range(n)], "CODE2": [f"C{(i * 31) % 991:03d}" for i in range(n)],
        "CODE3": ["NA"] * n, "CODE4": ["NA"] * n, "ICDVER": ["10"] * n, "CATEGORY": ["0"] * n,
        "INDEX": [str(i) for i in range(n)]})
    return _parquet_bytes(df)


def _parquet_bytes(df: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.write_parquet(buf)
    return buf.getvalue()


BIG_PEOPLE = tsv([[f"FG_SECRET_{i:06d}", "male", "NA", "60", "0"] for i in range(10_000)], PEOPLE_HEADER)


@dataclass(frozen=True)
class Fault:
    name: str
    code: str
    words: tuple[str, ...]                    # in the message of the diagnostic with `code`
    events: str | bytes | None = None          # None: the good events table
    people: str | bytes | None = None
    events_name: str = "events.tsv"
    people_name: str = "people.tsv"
    column: str | None = None                  # the column an error names

    def __post_init__(self):
        # an error names the column at fault where there is one
        assert self.column is None or self.code not in ("EP501", "EP513")

    @property
    def is_error(self) -> bool:
        return self.code not in WARNINGS

    def files(self, folder: Path) -> tuple[Path, Path]:
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for name, content, good in ((self.events_name, self.events, tsv(EVENTS, EVENT_HEADER)),
                                    (self.people_name, self.people, tsv(PEOPLE, PEOPLE_HEADER))):
            path = folder / name
            if content != "<absent>":
                data = good if content is None else content
                path.write_bytes(data.encode() if isinstance(data, str) else data)
            paths.append(path)
        return paths[0], paths[1]


WARNINGS = {"EP507", "EP508", "EP509", "EP510", "EP515"}
E, P = EVENT_HEADER, PEOPLE_HEADER


def _faults() -> list[Fault]:
    ev_no_age, ev_no_age_header = without(EVENTS, E, "EVENT_AGE")
    pp_no_sex, pp_no_sex_header = without(PEOPLE, P, "SEX")
    swapped = ["SOURCE", "FINNGENID", *E[2:]]
    int_ids = frame([[str(i), *r[1:]] for i, r in enumerate(EVENTS)], E).with_columns(pl.col("FINNGENID").cast(pl.Int64))
    events_frame = frame(EVENTS, E)
    ragged_short = [*EVENTS[:2], EVENTS[2][:-2], *EVENTS[3:]]
    ragged_long = [*EVENTS[:5], [*EVENTS[5], "FG_SECRET_EXTRA"], *EVENTS[6:]]
    big = big_parquet()
    return [
        # columns and headers
        Fault("events without EVENT_AGE", "EP502", ("events file", "EVENT_AGE", "the file has columns"),
              tsv(ev_no_age, ev_no_age_header), column="EVENT_AGE"),
        Fault("people without SEX", "EP502", ("people file", "SEX"), people=tsv(pp_no_sex, pp_no_sex_header), column="SEX"),
        Fault("events with a header of lower-case names", "EP502", ("finngenid", "FINNGENID"),
              tsv(EVENTS, [c.lower() for c in E]), column="FINNGENID"),
        Fault("events TSV without header line", "EP502", ("no header line",), tsv(EVENTS, None), column="FINNGENID"),
        Fault("people TSV without header line", "EP502", ("no header line",), people=tsv(PEOPLE, None), column="FINNGENID"),
        Fault("events TSV.gz without header line", "EP502", ("no header line",),
              gzip.compress(tsv(EVENTS, None).encode()), events_name="events.tsv.gz", column="FINNGENID"),
        Fault("Parquet events with numbered columns", "EP502", ("do not look like column names",),
              _parquet_bytes(pl.DataFrame(EVENTS, schema=[str(i) for i in range(11)], orient="row")),
              events_name="events.parquet", column="FINNGENID"),
        Fault("swapped FINNGENID and SOURCE headers", "EP511", ("swapped", "SOURCE", "more than half"),
              tsv(EVENTS, swapped), column="SOURCE"),
        Fault("SOURCE labels of another registry", "EP511", ("HILMO", "FinnGen detailed longitudinal"),
              tsv(with_column(EVENTS, E, "SOURCE", "HILMO", at=range(10)), E), column="SOURCE"),
        Fault("SOURCE missing in most rows", "EP511", ("(missing)", "more than half"),
              tsv(with_column(EVENTS, E, "SOURCE", "NA", at=range(9)), E), column="SOURCE"),
        Fault("a few rows of an unknown SOURCE", "EP507", ("MYSTERY (1 row)", "ignored"),
              tsv(with_column(EVENTS, E, "SOURCE", "MYSTERY"), E)),
        Fault("a few rows of a SOURCE that looks like an id", "EP507", ("not listed",),
              tsv(with_column(EVENTS, E, "SOURCE", "FG_SECRET_999999"), E)),
        Fault("extra columns", "EP509", ("NOTE",), tsv([[*r, "x"] for r in EVENTS], [*E, "NOTE"])),
        Fault("people without the optional DEATH", "EP510", ("DEATH", "missing for everyone"),
              people=tsv(*without(PEOPLE, P, "DEATH"))),
        # values
        Fault("EVENT_AGE not a number", "EP503", ("EVENT_AGE", "1 value", "a number"),
              tsv(with_column(EVENTS, E, "EVENT_AGE", "SECRETAGE"), E), column="EVENT_AGE"),
        Fault("EVENT_AGE with a decimal comma", "EP503", ("EVENT_AGE", "a number"),
              tsv(with_column(EVENTS, E, "EVENT_AGE", "45,5"), E), column="EVENT_AGE"),
        Fault("negative EVENT_AGE", "EP512", ("EVENT_AGE", "2 values", "not a possible age"),
              tsv(with_column(EVENTS, E, "EVENT_AGE", "-3.25", at=(0, 1)), E), column="EVENT_AGE"),
        Fault("EVENT_AGE above 130", "EP512", ("EVENT_AGE", "1 value", "above 130"),
              tsv(with_column(EVENTS, E, "EVENT_AGE", "731.5"), E), column="EVENT_AGE"),
        Fault("negative FU_END_AGE", "EP512", ("people file", "FU_END_AGE", "1 value"),
              people=tsv(with_column(PEOPLE, P, "FU_END_AGE", "-3.25"), P), column="FU_END_AGE"),
        Fault("FU_END_AGE above 130", "EP512", ("FU_END_AGE", "not a possible age"),
              people=tsv(with_column(PEOPLE, P, "FU_END_AGE", "731.5"), P), column="FU_END_AGE"),
        Fault("FU_END_AGE not a number", "EP503", ("FU_END_AGE", "a number"),
              people=tsv(with_column(PEOPLE, P, "FU_END_AGE", "SECRETAGE"), P), column="FU_END_AGE"),
        Fault("impossible event date", "EP503", ("APPROX_EVENT_DAY", "YYYY-MM-DD"),
              tsv(with_column(EVENTS, E, "APPROX_EVENT_DAY", "2001-13-45"), E), column="APPROX_EVENT_DAY"),
        Fault("event date in another format", "EP503", ("APPROX_EVENT_DAY", "1 value"),
              tsv(with_column(EVENTS, E, "APPROX_EVENT_DAY", "31.12.1999"), E), column="APPROX_EVENT_DAY"),
        Fault("bad birth date", "EP503", ("APPROX_BIRTH_DATE", "people file"),
              people=tsv(with_column(PEOPLE, P, "APPROX_BIRTH_DATE", "31.12.1999"), P), column="APPROX_BIRTH_DATE"),
        Fault("unknown SEX", "EP503", ("SEX", "1 value"),
              people=tsv(with_column(PEOPLE, P, "SEX", "FEMALE_X"), P), column="SEX"),
        Fault("DEATH not a whole number", "EP503", ("DEATH", "a whole number"),
              people=tsv(with_column(PEOPLE, P, "DEATH", "0.5"), P), column="DEATH"),
        # people ids
        Fault("a person twice", "EP505", ("not unique", "1 row"), people=tsv([*PEOPLE, PEOPLE[2]], P), column="FINNGENID"),
        Fault("a person without id", "EP506", ("FINNGENID is missing", "1 row"),
              people=tsv(with_column(PEOPLE, P, "FINNGENID", "NA", at=(3,)), P), column="FINNGENID"),
        # empty tables
        Fault("events with a header only", "EP513", ("no rows", "--allow-empty-events"), tsv([], E)),
        Fault("people with a header only", "EP513", ("no rows", "population is empty"), people=tsv([], P)),
        Fault("empty events file", "EP513", ("is empty",), b""),
        Fault("empty people file", "EP513", ("is empty",), people=b""),
        Fault("gzip of an empty file", "EP513", ("is empty",), gzip.compress(b""), events_name="events.tsv.gz"),
        # lines and separators
        Fault("a line with fewer fields", "EP501", ("line 4 has 9 fields", "the header line has 11"), tsv(ragged_short, E)),
        Fault("a line with more fields", "EP501", ("line 7 has 12 fields",), tsv(ragged_long, E)),
        Fault("a ragged line in a TSV.gz", "EP501", ("line 4 has 9 fields",),
              gzip.compress(tsv(ragged_short, E).encode()), events_name="events.tsv.gz"),
        Fault("a ragged people line", "EP501", ("people file", "line 3"),
              people=tsv([PEOPLE[0], PEOPLE[1][:3], *PEOPLE[2:]], P)),
        Fault("an empty line", "EP501", ("line 5 is empty",), tsv(EVENTS[:3], E) + "\n" + tsv(EVENTS[3:], None)),
        Fault("comma-separated events", "EP501", ("comma-separated",), tsv(EVENTS, E, ",")),
        Fault("semicolon-separated people", "EP501", ("semicolon-separated",), people=tsv(PEOPLE, P, ";")),
        Fault("comma-separated TSV.gz", "EP501", ("comma-separated",), gzip.compress(tsv(EVENTS, E, ",").encode()),
              events_name="events.tsv.gz"),
        Fault("not UTF-8", "EP501", ("not UTF-8",), tsv(with_column(EVENTS, E, "CODE2", "Ä99"), E).encode("latin-1")),
        # ids of the two files
        Fault("Int64 ids against text ids", "EP514", ("stored as Int64", "stored as text", "ids the same way"),
              _parquet_bytes(int_ids), events_name="events.parquet", column="FINNGENID"),
        Fault("zero-padded ids in one file only", "EP514", ("none of its 12 events",),
              tsv([[f"{i:07d}", *r[1:]] for i, r in enumerate(EVENTS)], E),
              people=tsv([[str(i), *r[1:]] for i, r in enumerate(PEOPLE)], P), column="FINNGENID"),
        Fault("events of a person outside the people table (a sub-cohort)", "EP508", ("3 events of 1 person", "ignored"),
              people=tsv(PEOPLE[:3], P)),
        Fault("repeated event rows", "EP515", ("2 rows repeat", "kept"), tsv([*EVENTS, EVENTS[4], EVENTS[4]], E)),
        Fault("repeated Parquet event rows", "EP515", ("1 row repeat",), _parquet_bytes(frame([*EVENTS, EVENTS[0]], E)),
              events_name="events.parquet"),
        # Parquet and gzip files
        Fault("corrupt Parquet page", "EP501", ("Parquet file that cannot be read",), corrupt(big, 0.6),
              people=BIG_PEOPLE, events_name="events.parquet"),
        Fault("corrupt Parquet page of an early column", "EP501", ("Parquet file", "corrupt"), corrupt(big, 0.3),
              people=BIG_PEOPLE, events_name="events.parquet"),
        Fault("truncated Parquet", "EP501", ("Parquet file",), big[: len(big) // 2], events_name="events.parquet"),
        Fault("PAR1 and garbage", "EP501", ("Parquet file",), b"PAR1 and no Parquet after it", events_name="events.parquet"),
        Fault("Parquet date of integers", "EP504", ("APPROX_EVENT_DAY", "stored as Int"),
              _parquet_bytes(events_frame.with_columns(pl.lit(7).alias("APPROX_EVENT_DAY"))),
              events_name="events.parquet", column="APPROX_EVENT_DAY"),
        Fault("Parquet code column of lists", "EP504", ("CODE1", "List"),
              _parquet_bytes(events_frame.with_columns(pl.concat_list("CODE1").alias("CODE1"))),
              events_name="events.parquet", column="CODE1"),
        Fault("Parquet SEX of dates", "EP504", ("SEX", "Date"),
              people=_parquet_bytes(frame(PEOPLE, P).with_columns(pl.col("APPROX_BIRTH_DATE").str.to_date().alias("SEX"))),
              people_name="people.parquet", column="SEX"),
        Fault("Parquet EVENT_AGE of text", "EP503", ("EVENT_AGE", "a number"),
              _parquet_bytes(frame(with_column(EVENTS, E, "EVENT_AGE", "SECRETAGE"), E)),
              events_name="events.parquet", column="EVENT_AGE"),
        Fault("truncated gzip", "EP501", ("gzip-compressed", "truncated or corrupt"),
              gzip.compress(tsv(EVENTS, E).encode())[:-40], events_name="events.tsv.gz"),
        Fault("gzip with a corrupt middle", "EP501", ("gzip-compressed",),
              corrupt(gzip.compress(tsv(EVENTS * 20, E).encode()), 0.5, 16), events_name="events.tsv.gz"),
        Fault("binary garbage", "EP501", ("binary data",), bytes(range(256)) * 4),
        Fault("missing events file", "EP501", ("does not exist",), "<absent>"),
        Fault("missing people file", "EP501", ("people file", "does not exist"), people="<absent>"),
    ]


FAULTS = _faults()


def diagnose(fault: Fault, folder: Path) -> tuple[RegistryError | None, tuple[Diagnostic, ...]]:
    """(the error, or None, and every diagnostic) of loading `fault`'s files."""
    events, people = fault.files(folder)
    try:
        reg = load_registry(events, people)
    except RegistryError as error:
        return error, error.diagnostics()
    return None, reg.diagnostics


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_fault(tmp_path, fault):
    error, diags = diagnose(fault, tmp_path)
    if fault.is_error:
        assert error is not None, f"{fault.name}: no error"
        assert error.code == fault.code, str(error)
        assert error.column == fault.column
        # the file at fault: the one that differs from the good tables (events for EP514)
        culprit = fault.people_name if fault.events is None else fault.events_name
        assert Path(error.file).name == culprit and error.file in error.message
        message = error.message
    else:
        assert error is None, str(error)
        (message,) = [d.message for d in diags if d.code == fault.code]
    for word in fault.words:
        assert word in message, message


def test_the_matrix_is_large_and_covers_every_registry_code():
    assert len(FAULTS) >= 40
    codes = {getattr(registry, n) for n in dir(registry) if n.startswith("EP_")}
    assert {f.code for f in FAULTS} == codes


def test_no_diagnostic_of_any_fault_shows_person_level_data(tmp_path):
    shown = []
    for i, fault in enumerate(FAULTS):
        error, diags = diagnose(fault, tmp_path / str(i))
        texts = [*(d.message for d in diags), *(h for d in diags for h in d.hints)]
        if error is not None:
            texts += [str(error), *(str(e) for e in error.also)]
        shown += [(fault.name, t) for t in texts]
    assert len(shown) >= len(FAULTS)
    leaks = [(name, secret, text) for name, text in shown for secret in SECRETS if secret in text]
    assert not leaks, leaks


@pytest.fixture(scope="module")
def one_endpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("defs") / "one.ep"
    path.write_text("endpoint A { hospital icd10 I21 }\n")
    return path


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_fault_through_the_cli(tmp_path, one_endpoint, fault):
    """`endpointc run` on each fault: an error exits 2 (an input error) naming its code, a
    warning exits 0 and says it; nothing person-level on either stream."""
    from typer.testing import CliRunner

    from endpointc.cli import app

    events, people = fault.files(tmp_path)
    result = CliRunner().invoke(app, ["run", str(one_endpoint), "--events", str(events), "--people", str(people),
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == (2 if fault.is_error else 0), (fault.name, result.output)
    assert fault.code in result.stderr or fault.words[0] in result.stderr, (fault.name, result.stderr)
    shown = result.stdout + result.stderr
    assert not [s for s in SECRETS if s in shown], (fault.name, shown)
