// @colyseus/sdk 0.18.4 end-to-end: the shared echo-room suite against odeon-host --protocol 0.18.
import { echoSuite } from "./echo-suite.mjs";
import { SDK18 } from "./sdks.mjs";

echoSuite(SDK18);
