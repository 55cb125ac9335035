//! The network families. Each is a tree of small layer structs, built through
//! [`crate::layers::Builder`] in PyTorch registration order so that the state_dict names
//! and their order are exactly those of the original PyTorch definitions.

pub(crate) mod plane;
pub(crate) mod resnet;
pub(crate) mod resnext;
pub(crate) mod shake;
pub(crate) mod wrn;
