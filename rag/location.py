"""A database index's location: the URL --index takes, checked before anything connects (rag/backend.py says
what the form means)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from rung.core.errors import RungError

SCHEMES = ("postgresql", "postgres")
URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
TABLE = re.compile(r"^[a-z_][a-z0-9_]{0,39}$")
URL_FORM = "postgresql://USER@HOST:PORT/DB?table=NAME (or postgresql:///DB?host=/socket/dir&table=NAME)"
# libpq parameters that carry a secret; never accepted in a URL that rung writes down.
SECRET_PARAMS = ("password", "sslpassword")


def is_url(location: str | os.PathLike) -> bool:
    return isinstance(location, str) and bool(URL.match(location))


@dataclass(frozen=True)
class DatabaseTarget:
    url: str          # as written into manifests and reports: no password, `table` included
    conninfo: str     # what psycopg connects with: the URL without `table`
    table: str


def parse_database_url(url: str) -> DatabaseTarget:
    """Check a database URL before anything connects: scheme, table, no password. One line per problem."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in SCHEMES:
        raise RungError(f"--index {_scrub(url)}: {parts.scheme}:// is not a store rung knows; give a folder or "
                        f"{URL_FORM}")
    params = parse_qsl(parts.query, keep_blank_values=True)
    if parts.password is not None or any(k in SECRET_PARAMS for k, _ in params):
        raise RungError(f"--index {_scrub(url)}: the URL holds a password, and rung writes index URLs into "
                        "manifests, plans and reports; remove it and set PGPASSWORD, or use ~/.pgpass or a "
                        "service file (PGSERVICEFILE)")
    tables = [v for k, v in params if k == "table"]
    if len(tables) != 1 or not TABLE.match(tables[0]):
        found = "no table parameter" if not tables else f"table {tables[-1][:50]!r}"
        raise RungError(f"--index {url}: {found}; name the index with ?table=NAME (lower-case letters, digits and "
                        f"_, up to 40, not starting with a digit): {URL_FORM}")
    rest = [(k, v) for k, v in params if k != "table"]
    conninfo = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(rest), ""))
    return DatabaseTarget(url=url, conninfo=conninfo, table=tables[0])


def _scrub(url: str) -> str:
    """The URL with any password replaced by ***, for error messages."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        netloc = netloc.replace(f":{parts.password}@", ":***@", 1)
    query = urlencode([(k, "***" if k in SECRET_PARAMS else v) for k, v in parse_qsl(parts.query, True)])
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def check_location(location: str | os.PathLike) -> None:
    """Refuse a malformed --index before any work (a folder is checked where it is used)."""
    if is_url(str(location)):
        parse_database_url(str(location))


def location_problem(location: str) -> str | None:
    """What is wrong with an index location given as text (a plan setting), or None."""
    if not is_url(location):
        return None
    try:
        parse_database_url(location)
    except RungError as error:
        return error.message
    return None
