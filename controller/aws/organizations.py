"""The accounts of an AWS Organizations organizational unit, and of the units below it."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mypy_boto3_organizations import OrganizationsClient


def member_accounts(organizations: OrganizationsClient, unit: str) -> list[str]:
    """Ids of the ACTIVE accounts in `unit` and every unit below it, sorted.

    Needs `organizations:ListAccountsForParent` and `organizations:ListOrganizationalUnitsForParent`
    (callable from the management account or a delegated administrator).
    """
    found: set[str] = set()
    pending = [unit]
    seen: set[str] = set()
    while pending:
        parent = pending.pop()
        if parent in seen:
            continue
        seen.add(parent)
        for page in organizations.get_paginator("list_accounts_for_parent").paginate(
            ParentId=parent
        ):
            found.update(a["Id"] for a in page["Accounts"] if a.get("Status") == "ACTIVE")
        for units in organizations.get_paginator("list_organizational_units_for_parent").paginate(
            ParentId=parent
        ):
            pending.extend(u["Id"] for u in units["OrganizationalUnits"])
    return sorted(found)
