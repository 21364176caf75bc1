//! mnttrace's agent as a library: the binary (`main.rs`) wires these modules,
//! and the fuzz targets (`tracer/fuzz`) reach the parsers through them.
pub mod agent;
pub mod capture;
pub mod cli;
pub mod container;
pub mod decode;
pub mod filter;
pub mod model;
pub mod output;
pub mod propagation;
pub mod record;
pub mod views;
