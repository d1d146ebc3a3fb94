pub(crate) mod ids;
