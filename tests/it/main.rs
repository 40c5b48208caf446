//! The one integration-test binary (one link step keeps CI fast).

mod bench;
mod chart;
mod cli;
mod crd_schema;
mod crd_testdata;
mod deploy;
mod differential;
mod digdir_client;
mod digdir_controllers;
mod digdir_scopes;
mod digdir_sim;
mod e2e;
mod graph_client;
mod graph_sim;
mod kms;
mod kube_server;
mod kubectl;
mod newcomer;
mod procs;
mod rbac;
mod real_cluster;
mod safety;
mod seam;
mod support;
