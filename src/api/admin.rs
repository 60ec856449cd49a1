//! `AdminService`: creating tenants, reading and replacing their settings
//! (docs/api.md), and creating, listing and revoking their API keys.
//!
//! Who may call it is decided by the authentication layer
//! ([`crate::auth::layer`]): the admin token when one is configured. A key's
//! secret is returned once by `CreateApiKey` and never stored or logged;
//! listings show the non-secret key id and prefix only.
//!
//! An empty `tenant_id` means the caller's own tenant ([`tenant_of`]). Updates
//! are validated as a whole ([`convert::settings_from_proto`]); every invalid
//! field is reported at once under `settings.<field>`, e.g.
//! `settings.pipeline_stages[1].win_probability`.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::api::convert;
use crate::api::convert::admin::{api_key_to_proto, parse_key_id, parse_key_name};
use crate::auth::keys;
use crate::auth::tenant_of;
use crate::error::{Error, quote};
use crate::proto::v1 as pb;
use crate::store::{Store, settings_of};
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

/// `KpiService.GetSettings`: the caller's own tenant settings, read-only, so
/// a tenant API key can learn its currency, zone and fiscal year without the
/// admin token.
pub async fn own_settings(
    store: &dyn Store,
    tenant: String,
) -> Result<pb::GetSettingsResponse, Error> {
    let settings = settings_of(store, &tenant).await?;
    Ok(pb::GetSettingsResponse {
        tenant_id: tenant,
        settings: Some(convert::settings_to_proto(&settings)),
    })
}

fn now_nanos() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn create_tenant(
        &self,
        request: Request<pb::CreateTenantRequest>,
    ) -> Result<Response<pb::CreateTenantResponse>, Status> {
        let request = request.into_inner();
        let tenant = convert::parse_id("tenant_id", request.tenant_id).map_err(Error::from)?;
        let settings = match request.settings {
            None => crate::domain::TenantSettings::default(),
            Some(proto) => convert::settings_from_proto("settings", proto)
                .map_err(convert::violations_error)?,
        };
        self.store.create_tenant(&tenant, &settings).await?;
        let stored = self.store.tenant_settings(&tenant).await?;
        tracing::info!(tenant, "tenant created");
        Ok(Response::new(pb::CreateTenantResponse {
            tenant_id: tenant,
            settings: Some(convert::settings_to_proto(&stored)),
        }))
    }

    async fn create_api_key(
        &self,
        request: Request<pb::CreateApiKeyRequest>,
    ) -> Result<Response<pb::CreateApiKeyResponse>, Status> {
        let request = request.into_inner();
        let tenant = convert::parse_id("tenant_id", request.tenant_id).map_err(Error::from)?;
        let name = parse_key_name(&request.name)?;
        let generated = keys::generate(&tenant, &name, now_nanos())?;
        self.store.insert_api_key(&generated.stored).await?;
        tracing::info!(tenant, key_id = generated.stored.info.id, "API key created");
        Ok(Response::new(pb::CreateApiKeyResponse {
            api_key: Some(api_key_to_proto(generated.stored.info)),
            key: generated.key,
        }))
    }

    async fn list_api_keys(
        &self,
        request: Request<pb::ListApiKeysRequest>,
    ) -> Result<Response<pb::ListApiKeysResponse>, Status> {
        let tenant =
            convert::parse_id("tenant_id", request.into_inner().tenant_id).map_err(Error::from)?;
        let keys = self.store.api_keys(&tenant).await?;
        Ok(Response::new(pb::ListApiKeysResponse {
            api_keys: keys.into_iter().map(api_key_to_proto).collect(),
        }))
    }

    async fn revoke_api_key(
        &self,
        request: Request<pb::RevokeApiKeyRequest>,
    ) -> Result<Response<pb::RevokeApiKeyResponse>, Status> {
        let request = request.into_inner();
        let key_id = parse_key_id(&request.key_id)?;
        let Some(info) = self.store.revoke_api_key(key_id, now_nanos()).await? else {
            return Err(
                Error::NotFound(format!("API key {} does not exist", quote(key_id))).into(),
            );
        };
        tracing::info!(tenant = info.tenant_id, key_id, "API key revoked");
        Ok(Response::new(pb::RevokeApiKeyResponse {
            api_key: Some(api_key_to_proto(info)),
        }))
    }

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
