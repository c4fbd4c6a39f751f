// The page the browser tests drive: the bundle's exports on window.Loupe, the gateway's
// address from the query string, and a log of what the tests did (seen in the screenshots).
import * as Loupe from "./loupe-client.js";

window.gatewayUrl = new URL(location.href).searchParams.get("gateway");
window.show = (id, value) => { document.getElementById(id).textContent = String(value); };
window.log = (line) => { document.getElementById("log").textContent += line + "\n"; };
window.Loupe = Loupe;
