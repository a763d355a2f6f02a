//! Upstream credentials from TokenService, asked for under this service's own identity: the
//! e-barimt central API's bearer tokens, fiskaltrust cash boxes' access tokens.

use fiscus_kit::peers::ServiceIdentity;
use fiscus_proto::v1 as pb;
use fiscus_proto::v1::token_service_client::TokenServiceClient;
use tonic::transport::Channel;

pub struct UpstreamTokens {
    identity: ServiceIdentity,
    channel: Channel,
}

impl UpstreamTokens {
    pub fn new(identity: ServiceIdentity, channel: Channel) -> Self {
        Self { identity, channel }
    }

    /// The token of `merchant_tin`'s `credential` at `provider`, as TokenService answers it.
    pub async fn get(
        &self,
        provider: pb::Provider,
        merchant_tin: &str,
        credential: &str,
    ) -> Result<pb::GetAccessTokenResponse, tonic::Status> {
        let mut request = tonic::Request::new(pb::GetAccessTokenRequest {
            provider: provider.into(),
            merchant_tin: merchant_tin.to_owned(),
            credential: credential.to_owned(),
            ..Default::default()
        });
        self.identity.prepare(&mut request).await?;
        Ok(TokenServiceClient::new(self.channel.clone())
            .get_access_token(request)
            .await?
            .into_inner())
    }
}
