"""Which backup sets a retention policy keeps: the newest `keep_last`, plus the newest set of
each of the last `keep_daily` days and of the last `keep_weekly` ISO weeks that have one."""

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class Retention(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keep_last: int = Field(default=7, ge=1, le=1000)
    keep_daily: int = Field(default=0, ge=0, le=3660)
    keep_weekly: int = Field(default=0, ge=0, le=520)


def _day(moment: datetime) -> str:
    return moment.date().isoformat()


def _week(moment: datetime) -> str:
    year, week, _ = moment.isocalendar()
    return f"{year}-W{week:02d}"


def kept(sets: list[tuple[str, datetime]], policy: Retention) -> set[str]:
    """`sets`: (id, created_at) of completed sets, any order."""
    newest_first = sorted(sets, key=lambda s: s[1], reverse=True)
    keep = {backup_id for backup_id, _ in newest_first[: policy.keep_last]}
    for limit, period in ((policy.keep_daily, _day), (policy.keep_weekly, _week)):
        seen: list[str] = []
        for backup_id, created in newest_first:
            key = period(created)
            if key not in seen:
                if len(seen) >= limit:
                    break
                seen.append(key)
                keep.add(backup_id)
    return keep
