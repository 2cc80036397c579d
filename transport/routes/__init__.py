"""The HTTP routes, one module per resource; ``ROUTE_HANDLERS`` is what the app factory registers."""

from transport.routes.activation import ActivationController
from transport.routes.apply import ApplyController
from transport.routes.campaigns import CampaignsController
from transport.routes.evaluation import CohortController, EvaluationRunsController
from transport.routes.live_monitoring import LiveMonitoringController, run_all
from transport.routes.operations import healthz, metrics, openapi_json, readyz
from transport.routes.policies import PoliciesController, list_presets
from transport.routes.promotions import PromotionsController
from transport.routes.risk_hub import RiskHubController
from transport.routes.rebalancing import AllocationsController, RebalanceFlags, RebalancingController
from transport.routes.strategies import StrategiesController
from transport.routes.worlds import WorldsController
from transport.routes.wvg import WorldViewGraphController

__all__ = ["ROUTE_HANDLERS", "RebalanceFlags"]

ROUTE_HANDLERS = [
    WorldsController, PoliciesController, StrategiesController, ActivationController, ApplyController,
    WorldViewGraphController, RebalancingController, AllocationsController, CohortController,
    EvaluationRunsController, PromotionsController, CampaignsController, LiveMonitoringController, run_all,
    RiskHubController,
    list_presets, healthz, readyz, metrics, openapi_json,
]
