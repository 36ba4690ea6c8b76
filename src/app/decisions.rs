//! The proxy's reloadable table seen as the forward-auth endpoint's [`DecisionTable`]: the
//! endpoint decides by the same route table and writes the same identity headers as the proxy,
//! from the same snapshot of the request, while `routes/` and `proxy/` never import each other.

use http::HeaderMap;

use crate::auth::identity::Identity;
use crate::auth::policy::RoutePolicy;
use crate::error::ApiError;
use crate::proxy::table::ProxyTable;
use crate::routes::DecisionTable;

impl DecisionTable for ProxyTable {
    fn policy_for(&self, path: &str) -> Option<&RoutePolicy> {
        self.router.policy_for(path)
    }

    fn set_identity_headers(
        &self,
        headers: &mut HeaderMap,
        identity: Option<&Identity>,
    ) -> Result<(), ApiError> {
        self.decision_identity(headers, identity).map_err(|e| {
            tracing::error!(error = %e, "identity cannot be sent in a decision");
            ApiError::Internal
        })
    }
}
