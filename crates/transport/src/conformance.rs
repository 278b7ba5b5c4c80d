//! The backend conformance suite (filled in with the first backend).
