"""Small pieces of output shared by several commands."""

from __future__ import annotations

from alembic_autocopy.output import Output
from alembic_autocopy.scanning import Inventory


def show_inventory_warnings(inventory: Inventory, out: Output) -> None:
    for skipped in inventory.skipped:
        out.warn(f"skipped {skipped.path}: {skipped.reason}")
    for note in inventory.notes:
        out.warn(note)
