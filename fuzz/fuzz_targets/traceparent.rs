//! The W3C `traceparent` metadata every call may carry (both services, and the gateway).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pair_common::observe::TraceContext;

fuzz_target!(|data: &[u8]| {
    let Ok(header) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(context) = TraceContext::parse(header) {
        assert!(context.trace_id != 0 && context.parent_id != 0);
        let child = TraceContext::parse(&context.child_header()).expect("ours parses");
        assert_eq!(
            (child.trace_id, child.flags),
            (context.trace_id, context.flags)
        );
    }
});
