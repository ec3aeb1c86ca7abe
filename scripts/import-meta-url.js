// Injected into the CommonJS bundles so that ESM dependencies reading import.meta.url work.
export const importMetaUrl = require('node:url').pathToFileURL(__filename).href;
