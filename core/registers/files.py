"""Register files: CSV (UTF-8, a BOM allowed), XLSX (the register's own sheet) and GeoJSON (a FeatureCollection),
read into numbered rows of cells keyed by column, and written back from entries.

Row numbers are those a person sees: in a CSV or a sheet the header is row 1, so the first entry is row 2; in
GeoJSON a row is a feature, counted from 1. A file that cannot be read as a whole (not the format its name says,
no header, a header cell merged across columns, no sheet of the register's name, a column named twice, a required
column missing, too many rows) is refused whole with `RegisterFileInvalid`, and nothing of it is imported.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from datetime import date, datetime
from pathlib import PurePath
from typing import Any

from core.platform.tabular import FileUnreadable
from core.registers import columns as cols
from core.registers.models import RegisterEntry, RegisterKind

MAX_ROWS = 20_000
MAX_BYTES = 20 * 1024 * 1024
FORMATS = ("csv", "xlsx", "geojson")

Row = tuple[int, dict[str, Any]]


class RegisterFileInvalid(FileUnreadable):
    """The file as a whole cannot be imported; `details` has a stable `reason`. Nothing of it is imported."""

    code = "register_file_invalid"


def file_format(filename: str) -> str:
    suffix = PurePath(filename).suffix.lower().lstrip(".")
    found = "geojson" if suffix == "json" else suffix
    if found not in FORMATS:
        raise RegisterFileInvalid("unknown_format", f"{filename}: a register file is .csv, .xlsx or .geojson",
                                  f"{filename}：登记文件应为 .csv、.xlsx 或 .geojson")
    return found


def _header(kind: RegisterKind, names: list[Any], filename: str) -> list[str | None]:
    known = cols.headers(kind)
    keys: list[str | None] = []
    for name in names:
        text = "" if name is None else str(name).strip().lower()
        key = known.get(text) if text else None
        if key is not None and key in keys:
            raise RegisterFileInvalid("duplicate_column", f"{filename}: the column {key} is named twice",
                                      f"{filename}：列“{key}”出现两次")
        keys.append(key)
    _required_present(kind, {k for k in keys if k}, filename)
    return keys


def _required_present(kind: RegisterKind, present: set[str], filename: str) -> None:
    missing = [c for c in cols.columns(kind) if c.required and c.key not in present]
    if missing:
        names = ", ".join(f"{c.key} ({c.zh})" for c in missing)
        raise RegisterFileInvalid("missing_column", f"{filename}: no column {names}",
                                  f"{filename}：缺少列 {'、'.join(c.zh for c in missing)}")


def _table_rows(kind: RegisterKind, table: Iterable[list[Any]], filename: str) -> list[Row]:
    iterator = iter(table)
    first = next(iterator, None)
    if first is None or not any(v not in (None, "") for v in first):
        raise RegisterFileInvalid("no_header", f"{filename} has no header row", f"{filename}：缺少表头行")
    keys = _header(kind, first, filename)
    rows: list[Row] = []
    for number, values in enumerate(iterator, start=2):
        if not any(v not in (None, "") and not (isinstance(v, str) and not v.strip()) for v in values):
            continue
        if len(rows) >= MAX_ROWS:
            raise RegisterFileInvalid("too_many_rows", f"{filename} has more than {MAX_ROWS} rows",
                                      f"{filename}：超过{MAX_ROWS}行")
        rows.append((number, {key: undefused(values[i]) for i, key in enumerate(keys) if key and i < len(values)}))
    return rows


def _xlsx(kind: RegisterKind, data: bytes, filename: str) -> list[Row]:
    from openpyxl import load_workbook

    try:
        book = load_workbook(io.BytesIO(data), data_only=True)
    except Exception as exc:  # openpyxl raises many kinds on a file that is not a workbook
        raise RegisterFileInvalid("unreadable", f"{filename} is not an XLSX workbook ({type(exc).__name__})",
                                  f"{filename}：不是有效的 XLSX 工作簿") from None
    names = cols.SHEETS[kind]
    sheet = next((book[n] for n in book.sheetnames if n.strip() in names), None)
    if sheet is None:
        raise RegisterFileInvalid(
            "wrong_sheet", f"{filename}: no sheet named {names[0]} or {names[1]} (it has {', '.join(book.sheetnames)})",
            f"{filename}：没有名为“{names[1]}”或“{names[0]}”的工作表（现有：{'、'.join(book.sheetnames)}）")
    for merged in sheet.merged_cells.ranges:
        if merged.min_row <= 1:
            raise RegisterFileInvalid(
                "merged_header", f"{filename}: header cells {merged.coord} are merged; one column a header cell",
                f"{filename}：表头单元格 {merged.coord} 已合并，请每列一个表头")
    if sheet.max_row > MAX_ROWS + 1:
        raise RegisterFileInvalid("too_many_rows", f"{filename} has more than {MAX_ROWS} rows",
                                  f"{filename}：超过{MAX_ROWS}行")
    return _table_rows(kind, (list(r) for r in sheet.iter_rows(values_only=True)), filename)


def _csv(kind: RegisterKind, data: bytes, filename: str) -> list[Row]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise RegisterFileInvalid("not_utf8", f"{filename} is not UTF-8 text",
                                  f"{filename}：不是 UTF-8 编码的文本") from None
    try:
        return _table_rows(kind, csv.reader(io.StringIO(text, newline="")), filename)
    except csv.Error as exc:
        raise RegisterFileInvalid("unreadable", f"{filename} is not CSV ({exc})",
                                  f"{filename}：无法按 CSV 读取") from None


def _geojson(kind: RegisterKind, data: bytes, filename: str) -> list[Row]:
    try:
        document = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise RegisterFileInvalid("unreadable", f"{filename} is not JSON", f"{filename}：不是有效的 JSON") from None
    if not isinstance(document, dict) or document.get("type") != "FeatureCollection" \
            or not isinstance(document.get("features"), list):
        raise RegisterFileInvalid("not_feature_collection", f"{filename} is not a GeoJSON FeatureCollection",
                                  f"{filename}：不是 GeoJSON FeatureCollection")
    features = document["features"]
    if len(features) > MAX_ROWS:
        raise RegisterFileInvalid("too_many_rows", f"{filename} has more than {MAX_ROWS} features",
                                  f"{filename}：超过{MAX_ROWS}个要素")
    known = cols.headers(kind)
    rows: list[Row] = []
    present: set[str] = set()
    for number, feature in enumerate(features, start=1):
        properties = feature.get("properties") if isinstance(feature, dict) else None
        cells: dict[str, Any] = {}
        for name, value in (properties or {}).items() if isinstance(properties, dict) else ():
            key = known.get(str(name).strip().lower())
            if key is not None and key not in ("lon", "lat", "geometry"):
                cells[key] = value
        geometry = feature.get("geometry") if isinstance(feature, dict) else None
        cells["geometry"] = geometry if geometry is not None else None
        present |= set(cells)
        rows.append((number, cells))
    if rows:
        _required_present(kind, present, filename)
    return rows


def read_rows(kind: RegisterKind, filename: str, data: bytes) -> list[Row]:
    """The numbered rows of a register file, or RegisterFileInvalid."""
    if len(data) > MAX_BYTES:
        raise RegisterFileInvalid("too_large", f"{filename} is larger than {MAX_BYTES // 1024 // 1024} MB",
                                  f"{filename}：文件超过{MAX_BYTES // 1024 // 1024} MB")
    found = file_format(filename)
    return _xlsx(kind, data, filename) if found == "xlsx" else _csv(kind, data, filename) if found == "csv" \
        else _geojson(kind, data, filename)


# -- writing ----------------------------------------------------------------------------------------------------
FORMULA_START = ("=", "+", "@", "-")


def _defused(value: Any) -> Any:
    """Text a spreadsheet would run as a formula (=, +, @, - first) kept as text in a CSV: a leading apostrophe,
    as spreadsheets write it, and taken off again on import."""
    return f"'{value}" if isinstance(value, str) and value.startswith(FORMULA_START) else value


def undefused(value: Any) -> Any:
    return value[1:] if isinstance(value, str) and value.startswith("'") and value[1:2] in FORMULA_START \
        and len(value) > 1 else value


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def entry_cells(kind: RegisterKind, entry: RegisterEntry) -> dict[str, Any]:
    """An entry's cells as an export writes them: a point as lon and lat, a polygon as GeoJSON, datum WGS-84."""
    cells: dict[str, Any] = {}
    for column in cols.columns(kind):
        if column.key in ("lon", "lat", "geometry", "datum"):
            continue
        cells[column.key] = _plain(getattr(entry, column.key))
    geometry = json.loads(entry.geometry) if entry.geometry else None
    is_point = geometry is not None and geometry.get("type") == "Point"
    cells["lon"] = geometry["coordinates"][0] if is_point and geometry else None
    cells["lat"] = geometry["coordinates"][1] if is_point and geometry else None
    cells["geometry"] = entry.geometry if geometry is not None and not is_point else None
    cells["datum"] = "wgs84" if geometry is not None else None
    return cells


def write(kind: RegisterKind, entries: Iterable[RegisterEntry], fmt: str) -> bytes:
    """The entries as a CSV, XLSX (one sheet named after the register) or GeoJSON file."""
    keys = [c.key for c in cols.columns(kind)]
    rows = [entry_cells(kind, e) for e in entries]
    if fmt == "geojson":
        features = []
        for entry_row in rows:
            geometry = entry_row.pop("geometry")
            lon, lat = entry_row.pop("lon"), entry_row.pop("lat")
            shape = json.loads(geometry) if geometry else (
                {"type": "Point", "coordinates": [lon, lat]} if lon is not None else None)
            entry_row.pop("datum")
            features.append({"type": "Feature", "geometry": shape, "properties": entry_row})
        return json.dumps({"type": "FeatureCollection", "features": features}, ensure_ascii=False,
                          indent=1).encode("utf-8")
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(keys)
        for entry_row in rows:
            writer.writerow(["" if entry_row[k] is None else _defused(entry_row[k]) for k in keys])
        return ("\ufeff" + out.getvalue()).encode("utf-8")
    if fmt == "xlsx":
        from openpyxl import Workbook

        book = Workbook()
        sheet = book.active
        assert sheet is not None
        sheet.title = cols.SHEETS[kind][0]
        sheet.append(keys)
        for entry_row in rows:
            sheet.append([entry_row[k] for k in keys])
            for written in sheet[sheet.max_row]:
                if isinstance(written.value, str) and written.value.startswith("="):
                    written.data_type = "s"  # text, never a formula
        buffer = io.BytesIO()
        book.save(buffer)
        return buffer.getvalue()
    raise RegisterFileInvalid("unknown_format", f"a register is exported as {', '.join(FORMATS)}",
                              "登记只能导出为 csv、xlsx 或 geojson")
