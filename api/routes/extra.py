"""The other reference services' views in one router: breakdowns, lists, execution state."""

from __future__ import annotations

from fastapi import APIRouter

from api.routes import breakdowns, lists

router = APIRouter()
router.include_router(breakdowns.router)
router.include_router(lists.router)
