// gateway-client.mjs: gateway-client.js as an ES module (README "Browser client").
//   import { GatewayClient } from "/public/gateway-client.mjs";
// It runs gateway-client.js once (which also sets globalThis.GatewayClient) and exports it.
import "./gateway-client.js";

export const GatewayClient = globalThis.GatewayClient;
export const GatewayError = GatewayClient.GatewayError;
export default GatewayClient;
