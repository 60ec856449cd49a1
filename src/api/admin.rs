//! `AdminService`: reading and replacing a tenant's settings (SPEC §4).
//!
//! An empty `tenant_id` means the caller's own tenant ([`tenant_of`]). Updates
//! are validated as a whole ([`convert::settings_from_proto`]); every invalid
//! field is reported at once under `settings.<field>`, e.g.
//! `settings.pipeline_stages[1].win_probability`.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::api::convert;
use crate::api::ingest::settings_of;
use crate::api::tenant_of;
use crate::error::Error;
use crate::proto::v1 as pb;
use crate::store::Store;
use pb::admin_service_server::AdminService;

/// The `AdminService` implementation.
#[derive(Clone)]
pub struct AdminApi {
    /// Where tenant settings live.
    store: Arc<dyn Store>,
}

impl std::fmt::Debug for AdminApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminApi").finish_non_exhaustive()
    }
}

impl AdminApi {
    /// An admin service over `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        AdminApi { store }
    }
}

/// The tenant a request names, or the caller's own when `tenant_id` is empty.
fn target_tenant<T>(request: &Request<T>, tenant_id: &str) -> Result<String, Error> {
    if tenant_id.is_empty() {
        return Ok(tenant_of(request));
    }
    convert::parse_id("tenant_id", tenant_id.to_string()).map_err(Error::from)
}

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn get_tenant_settings(
        &self,
        request: Request<pb::GetTenantSettingsRequest>,
    ) -> Result<Response<pb::GetTenantSettingsResponse>, Status> {
        let tenant = target_tenant(&request, &request.get_ref().tenant_id)?;
        let settings = settings_of(self.store.as_ref(), &tenant).await?;
        Ok(Response::new(pb::GetTenantSettingsResponse {
            tenant_id: tenant,
            settings: Some(convert::settings_to_proto(&settings)),
        }))
    }

    async fn update_tenant_settings(
        &self,
        request: Request<pb::UpdateTenantSettingsRequest>,
    ) -> Result<Response<pb::UpdateTenantSettingsResponse>, Status> {
        let tenant = target_tenant(&request, &request.get_ref().tenant_id)?;
        let Some(proto) = request.into_inner().settings else {
            return Err(Error::invalid("settings", "is required").into());
        };
        let settings =
            convert::settings_from_proto("settings", proto).map_err(convert::violations_error)?;
        // NOT_FOUND for an unknown tenant, before anything is written.
        settings_of(self.store.as_ref(), &tenant).await?;
        self.store
            .update_tenant_settings(&tenant, &settings)
            .await?;
        let stored = self.store.tenant_settings(&tenant).await?;
        Ok(Response::new(pb::UpdateTenantSettingsResponse {
            tenant_id: tenant,
            settings: Some(convert::settings_to_proto(&stored)),
        }))
    }
}
