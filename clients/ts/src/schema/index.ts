// The generated OpenAPI types of each service, one namespace per service.
export type * as catalog from "./catalog.js";
export type * as images from "./images.js";
export type * as backup from "./backup.js";
export type * as inspect from "./inspect.js";
