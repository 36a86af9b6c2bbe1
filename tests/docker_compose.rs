//! docker-compose.yml cannot run here (no Docker engine); this keeps it consistent with the
//! code: the services exist, the ports match, and every CREDITSTREAM__ variable names a
//! real configuration key with a value the configuration accepts.

use creditstream::config::Config;
use serde_yaml::Value;

fn compose() -> Value {
    let mut value: Value =
        serde_yaml::from_str(include_str!("../docker-compose.yml")).expect("docker-compose.yml is YAML");
    value.apply_merge().expect("merge keys resolve");
    value
}

#[test]
fn the_services_of_the_design_are_there() {
    let compose = compose();
    let services = compose["services"].as_mapping().expect("services");
    for name in ["kafka", "mysql", "prometheus", "grafana", "ingest", "processor", "sink"] {
        assert!(services.contains_key(name), "service {name}");
    }
    assert_eq!(compose["services"]["ingest"]["command"][1], "ingest");
    assert_eq!(compose["services"]["processor"]["command"][1], "process");
    assert_eq!(compose["services"]["sink"]["command"][1], "sink");
    assert!(
        compose["services"]["processor"]["ports"].is_null(),
        "processor publishes no host port, so it can scale"
    );
    assert!(compose["services"]["kafka"]["image"]
        .as_str()
        .unwrap()
        .starts_with("apache/kafka:4"));
    assert!(compose["services"]["mysql"]["image"]
        .as_str()
        .unwrap()
        .starts_with("mysql:8"));
}

#[test]
fn every_app_variable_is_a_valid_config_key() {
    let compose = compose();
    let mut checked = 0;
    for service in ["ingest", "processor", "sink", "init"] {
        let env = compose["services"][service]["environment"]
            .as_mapping()
            .expect("environment");
        let vars: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().unwrap().to_string(),
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.as_i64().unwrap().to_string()),
                )
            })
            .collect();
        assert!(vars.iter().all(|(k, _)| k.starts_with("CREDITSTREAM__")));
        let config = Config::load_from(None, vars.clone()).unwrap_or_else(|e| panic!("{service}: {e}"));
        assert_eq!(config.kafka.bootstrap_servers, "kafka:9092");
        assert!(config.mysql.url.contains("@mysql:3306/demodb"));
        checked += vars.len();
    }
    assert!(checked >= 12);
}

#[test]
fn published_ports_match_the_configuration() {
    let compose = compose();
    let ingest_env = &compose["services"]["ingest"]["environment"];
    let listen = ingest_env["CREDITSTREAM__INGEST__LISTEN"].as_str().unwrap();
    let port = listen.rsplit(':').next().unwrap();
    assert_eq!(
        compose["services"]["ingest"]["ports"][0].as_str().unwrap(),
        format!("{port}:{port}")
    );
    let defaults = Config::load_from(None, Vec::new()).unwrap();
    assert!(
        defaults.ingest.listen.ends_with(&format!(":{port}")),
        "the seed's port in both"
    );
    let scrape =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/prometheus-compose.yml")).unwrap();
    let processor_port = compose["services"]["processor"]["environment"]["CREDITSTREAM__PROCESSOR__METRICS_LISTEN"]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    let sink_port = compose["services"]["sink"]["environment"]["CREDITSTREAM__SINK__METRICS_LISTEN"]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    assert!(scrape.contains(&format!("port: {processor_port}")));
    assert!(scrape.contains(&format!("sink:{sink_port}")));
    assert!(scrape.contains(&format!("ingest:{port}")));
}
