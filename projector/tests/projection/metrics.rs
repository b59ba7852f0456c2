use crate::helpers::*;
use chrono::Utc;
use domain::*;
use event_store::{ExpectedRevision, Metadata, NewEvent};
use service_kit::metrics::{render, Format};
use uuid::Uuid;

#[tokio::test]
async fn an_applied_event_is_timed_from_its_command_to_visible_with_its_trace_as_exemplar() {
    let env = env().await;
    let id = Uuid::new_v4();
    let trace_id = Uuid::new_v4().simple().to_string();
    let events = Orders::decide(&Orders::rebuild(&[]), place(id)).unwrap();
    let metadata = Metadata {
        occurred_at: Some(Utc::now() - chrono::Duration::seconds(2)),
        traceparent: Some(format!("00-{trace_id}-00f067aa0ba902b7-01")),
        ..Metadata::default()
    };
    let new = events
        .iter()
        .map(|e| NewEvent {
            id: Uuid::new_v4(),
            event_type: e.event_type().into(),
            schema_version: e.schema_version(),
            data: e.data(),
            metadata: metadata.clone(),
        })
        .collect();
    env.store
        .append(&Orders::stream_name(id), ExpectedRevision::NoStream, new)
        .await
        .unwrap();
    project(&env.projector, 1).await;

    let page = render(Format::OpenMetrics);
    let exemplar = page
        .lines()
        .filter(|l| l.starts_with("milestone_command_to_visible_seconds_bucket{"))
        .filter(|l| l.contains("projection=\"order_status\""))
        .find(|l| l.contains(&trace_id))
        .unwrap_or_else(|| panic!("no exemplar with trace {trace_id}:\n{page}"));
    // The exemplar's value is the event's time to visibility: the two seconds since its command.
    let seconds: f64 = exemplar
        .rsplit("} ")
        .next()
        .and_then(|v| v.split(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no value in {exemplar}"));
    assert!((2.0..30.0).contains(&seconds), "{exemplar}");
    assert!(
        page.contains("milestone_projection_events_total{projection=\"order_status\"}"),
        "{page}"
    );
}
