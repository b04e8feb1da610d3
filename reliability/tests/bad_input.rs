//! Bad input, fuzzed with proptest: bulk validation, job-args decoding, the environment knobs
//! and cron expressions answer a clear error (or a value that keeps their invariants) and
//! never panic.

use chrono::{TimeZone, Utc};
use netauto_core::bulk::BulkArgs;
use netauto_core::bulk::{BulkRequest, MAX_COMMAND_BYTES};
use netauto_core::retention::RetentionArgs;
use netauto_core::retention::RetentionConfig;
use netauto_core::runtime::CronSchedule;
use netauto_core::runtime::{QUEUES_VAR, QueueLimits};
use netauto_core::{BulkRef, DeviceId};
use proptest::prelude::*;
use serde_json::Value;

const RETENTION_VARS: [&str; 3] = [
    "NET_AUTO_RUN_MAX_DAYS",
    "NET_AUTO_RUN_MAX_BYTES",
    "NET_AUTO_RETENTION_CRON",
];

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,40}".prop_map(Value::from),
        "[0-9a-fA-F]{30,34}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("device_ids".to_owned()),
                    Just("command".to_owned()),
                    Just("requested_by".to_owned()),
                    Just("bulk_ref".to_owned()),
                    Just("dry_run".to_owned()),
                    "[a-z_]{1,10}",
                ],
                inner,
                0..6,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn valid_bulk_args() -> Value {
    serde_json::json!({
        "device_ids": [1, 2, 3],
        "command": "show version",
        "requested_by": "ann",
        "bulk_ref": "0123456789abcdef0123456789abcdef",
    })
}

fn command() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,64}",
        "[ \t]{0,3}show [a-z \\x00-\\x1f\\x7f\u{85}\u{2028}]{0,20}[ \t\r\n]{0,3}",
        (0usize..5000).prop_map(|n| format!(" {} ", "x".repeat(n))),
        (4090usize..4100).prop_map(|n| "é".repeat(n / 2)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn bulk_validation_answers_a_valid_request_or_a_clear_error(
        ids in prop::collection::vec(-5i64..60, 0..200),
        cmd in command(),
        by in prop_oneof![".{0,12}", "[ \t]{0,4}"],
    ) {
        let ids: Vec<DeviceId> = ids.into_iter().map(DeviceId).collect();
        match (BulkRequest { device_ids: &ids, command: &cmd, requested_by: &by }).validate() {
            Ok(v) => {
                prop_assert!(!v.command.is_empty() && v.command.len() <= MAX_COMMAND_BYTES);
                prop_assert_eq!(v.command.as_str(), v.command.trim());
                prop_assert!(!v.command.chars().any(char::is_control), "{:?}", v.command);
                prop_assert!(!v.requested_by.is_empty());
                prop_assert_eq!(v.requested_by.as_str(), v.requested_by.trim());
                let mut seen = std::collections::HashSet::new();
                let first_order: Vec<DeviceId> =
                    ids.iter().copied().filter(|d| seen.insert(*d)).collect();
                prop_assert_eq!(v.device_ids, first_order);
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn random_json_never_panics_the_job_args_decoders(v in json()) {
        match serde_json::from_value::<BulkArgs>(v.clone()) {
            Ok(args) => {
                prop_assert!(BulkRef::parse(args.bulk_ref.as_str()).is_ok());
                let back = serde_json::to_value(&args).expect("serialize");
                prop_assert_eq!(serde_json::from_value::<BulkArgs>(back).expect("round trip"), args);
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
        match serde_json::from_value::<RetentionArgs>(v) {
            Ok(_) => {}
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn one_bad_field_in_bulk_args_is_an_error_naming_the_problem(
        field in prop_oneof![
            Just("device_ids"), Just("command"), Just("requested_by"), Just("bulk_ref")
        ],
        v in json(),
    ) {
        let mut args = valid_bulk_args();
        args[field] = v.clone();
        match serde_json::from_value::<BulkArgs>(args) {
            Ok(a) => {
                // Only values of the right type get through.
                match field {
                    "device_ids" => prop_assert_eq!(
                        serde_json::to_value(&a.device_ids).expect("ser"), v
                    ),
                    "bulk_ref" => prop_assert_eq!(Value::from(a.bulk_ref.as_str()), v),
                    _ => prop_assert!(v.is_string()),
                }
            }
            Err(e) => {
                let msg = e.to_string();
                prop_assert!(
                    msg.contains("invalid") || msg.contains("missing") || msg.contains("expected")
                        || msg.contains("bulk reference") || msg.contains("out of range"),
                    "unclear error: {}", msg
                );
            }
        }
    }

    #[test]
    fn retention_knobs_answer_a_config_or_an_error_naming_the_variable(
        days in proptest::option::of(prop_oneof![".{0,12}", "[ +-]?[0-9]{0,22}[ a-zA-Z]{0,3}"]),
        bytes in proptest::option::of(prop_oneof![".{0,12}", "[ +-]?[0-9]{0,22}[ kKmMgGiB]{0,3}"]),
        cron in proptest::option::of(prop_oneof![".{0,20}", "@[a-z]{0,8}", "([0-9*/,-]{1,5} ){4}[0-9*/,-]{1,5}"]),
    ) {
        let lookup = |name: &str| match name {
            "NET_AUTO_RUN_MAX_DAYS" => days.clone(),
            "NET_AUTO_RUN_MAX_BYTES" => bytes.clone(),
            "NET_AUTO_RETENTION_CRON" => cron.clone(),
            _ => None,
        };
        match RetentionConfig::from_lookup(lookup) {
            Ok(c) => {
                prop_assert!(c.max_days() >= 1 && c.max_bytes() >= 1);
                prop_assert!(CronSchedule::parse(c.cron()).is_ok());
            }
            Err(e) => {
                prop_assert!(RETENTION_VARS.contains(&e.var), "{:?}", e);
                prop_assert!(e.to_string().contains(e.var));
            }
        }
    }

    #[test]
    fn queue_limits_answer_limits_or_an_error_naming_the_variable(
        s in prop_oneof![".{0,30}", "([a-z _]{0,6}:[0-9x -]{0,5},?){0,5}"],
    ) {
        match QueueLimits::parse(&s) {
            Ok(l) => {
                prop_assert!(l.iter().count() > 0);
                prop_assert!(l.iter().all(|(q, n)| !q.is_empty() && (1..=1000).contains(&n)));
            }
            Err(e) => {
                prop_assert_eq!(e.var, QUEUES_VAR);
                prop_assert_eq!(e.value.as_str(), s.as_str());
            }
        }
    }

    #[test]
    fn cron_expressions_parse_or_fail_cleanly_and_schedules_move_forward(
        expr in prop_oneof![
            ".{0,30}",
            "@[a-z]{0,9}",
            prop::collection::vec(
                prop_oneof![
                    "\\*", "\\*/[0-9]{1,3}", "[0-9]{1,3}", "[0-9]{1,2}-[0-9]{1,2}",
                    "[0-9]{1,2}-[0-9]{1,2}/[0-9]{1,2}", "[0-9]{1,2},[0-9]{1,2}",
                    "(MON|SUN|JAN|DEC|mon|L|W|5#3|\\?|-1|)",
                ],
                0..8,
            )
            .prop_map(|f| f.join(" ")),
        ],
    ) {
        if let Ok(s) = CronSchedule::parse(&expr) {
            let t = Utc.with_ymd_and_hms(2026, 2, 28, 23, 59, 30).single().expect("t");
            if let Some(n) = s.next_after(t) {
                prop_assert!(n > t);
            }
            if let Some(l) = s.latest_at_or_before(t) {
                prop_assert!(l <= t);
            }
        }
    }
}
