"""Devices and what they measure: device specs (`device`), one backend per runtime (`backends`), where
timings come from (`measurer`: this host, or `hwnas agent` on the device through `agent.client`),
latency tables (`table`) built by `profiling` and checked by `validation`, and energy (`energy`)."""
