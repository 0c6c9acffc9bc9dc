"""The other reference services' views in one router: breakdowns, lists, execution state;
and the delivery insight none of them offers (timeline, failure reasons, latency)."""

from __future__ import annotations

from fastapi import APIRouter

from api.routes import breakdowns, insight, lists

router = APIRouter()
router.include_router(breakdowns.router)
router.include_router(lists.router)
router.include_router(insight.router)
