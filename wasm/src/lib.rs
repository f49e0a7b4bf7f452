//! Browser client: the Tidepool API for JavaScript over IndexedDB (filled by the browser-client work).
