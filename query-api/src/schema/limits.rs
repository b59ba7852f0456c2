//! Depth and complexity limits, checked on the validated query so that a refusal carries its
//! code from where it is decided.

use crate::error::{extension_values, QueryError};
use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextValidation};
use async_graphql::{ServerError, ValidationResult};
use std::sync::Arc;

/// Refuses a query nested deeper or costing more than the limits; codes validation failures.
#[derive(Debug, Clone, Copy)]
pub(super) struct QueryLimits {
    pub max_depth: usize,
    pub max_complexity: usize,
}

impl ExtensionFactory for QueryLimits {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(*self)
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for QueryLimits {
    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let result = next.run(ctx).await.map_err(|errors| {
            errors
                .into_iter()
                .map(|mut e| {
                    e.extensions
                        .get_or_insert_with(|| extension_values("GRAPHQL_VALIDATION_FAILED"));
                    e
                })
                .collect::<Vec<_>>()
        })?;
        if result.complexity > self.max_complexity {
            let error = QueryError::TooComplex {
                complexity: result.complexity,
                max: self.max_complexity,
            };
            return Err(vec![error.into_server_error()]);
        }
        if result.depth > self.max_depth {
            let error = QueryError::TooDeep {
                depth: result.depth,
                max: self.max_depth,
            };
            return Err(vec![error.into_server_error()]);
        }
        Ok(result)
    }
}
