"""The lab: a real kube-proxy data plane in Linux network namespaces.

Safety rules (not negotiable): the lab only works inside network namespaces it
creates (name prefix ``npa-``), with addresses from 198.18.0.0/15, never touches
the root namespace's interfaces, routes, sysctls or netfilter rules, loads no
kernel module, bounds every traffic loop in count and time, and tears down
everything it made, also after an error, SIGINT or SIGTERM.
"""
