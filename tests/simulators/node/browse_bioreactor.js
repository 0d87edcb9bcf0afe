// An independent OPC UA client (node-opcua, not asyncua) browses the simulated bioreactor
// controller over a Basic256Sha256 SignAndEncrypt session and reads every unit's variables.
// Prints one JSON object:
// RESULT {"units": {"U01": {"Temperature": 22.0, ...}}, "heater_write": "Good"|"Bad..."}
// usage: node browse_bioreactor.js ENDPOINT CERT_PEM KEY_PEM PKI_DIR
"use strict";
const opcua = require("node-opcua");

const NAMESPACE = "urn:cellshuttle:sim-bioreactor";

async function main() {
  const [endpoint, certificateFile, privateKeyFile, pkiDir] = process.argv.slice(2);
  const client = opcua.OPCUAClient.create({
    applicationName: "node-opcua bioreactor test",
    applicationUri: "urn:cellshuttle:tests:node-opcua",
    endpointMustExist: false,
    securityMode: opcua.MessageSecurityMode.SignAndEncrypt,
    securityPolicy: opcua.SecurityPolicy.Basic256Sha256,
    certificateFile,
    privateKeyFile,
    clientCertificateManager: new opcua.OPCUACertificateManager({
      rootFolder: pkiDir,
      automaticallyAcceptUnknownCertificate: true,
    }),
    connectionStrategy: { maxRetry: 0 },
  });
  await client.connect(endpoint);
  const session = await client.createSession();
  try {
    const namespaces = await session.readNamespaceArray();
    const ns = namespaces.indexOf(NAMESPACE);
    if (ns < 0) throw new Error(`namespace ${NAMESPACE} not served`);
    const path = `/${ns}:DeviceSet/${ns}:BRC-SIM/${ns}:FunctionalUnitSet`;
    const found = await session.translateBrowsePath(
      opcua.makeBrowsePath("ObjectsFolder", path),
    );
    if (!found.statusCode.isGood()) throw new Error(`browse path ${path}: ${found.statusCode}`);
    const unitSet = found.targets[0].targetId;
    const browsed = await session.browse(unitSet);
    const units = {};
    for (const ref of browsed.references) {
      const unit = ref.browseName.name;
      units[unit] = {};
      const functionSet = await session.browse(ref.nodeId);
      const fs = functionSet.references.find((r) => r.browseName.name === "FunctionSet");
      const functions = await session.browse(fs.nodeId);
      for (const fn of functions.references) {
        const variables = await session.browse(fn.nodeId);
        for (const v of variables.references) {
          const value = await session.read({ nodeId: v.nodeId, attributeId: opcua.AttributeIds.Value });
          units[unit][`${fn.browseName.name}.${v.browseName.name}`] = value.value.value;
        }
      }
    }
    const write = await session.write({
      nodeId: `ns=${ns};s=U01.Heater.Output`,
      attributeId: opcua.AttributeIds.Value,
      value: { value: { dataType: opcua.DataType.Double, value: 250.0 } },
    });
    console.log("RESULT " + JSON.stringify({ units, out_of_range_write: write.name }));
  } finally {
    await session.close();
    await client.disconnect();
  }
}

main().catch((error) => {
  console.error(String(error && error.stack ? error.stack : error));
  process.exit(1);
});
