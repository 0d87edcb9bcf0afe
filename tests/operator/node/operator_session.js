// An independent OPC UA stack (node-opcua, not asyncua) operates the daemon's operator server:
// a Basic256Sha256 SignAndEncrypt session signed in as an operator browses DeviceSet, loads a
// protocol, starts it and reads State; a viewer, an anonymous session and a wrong password are
// refused. Prints one line: RESULT {...} (JSON).
// usage: node operator_session.js ENDPOINT PKI_DIR PROTOCOL_FILE
"use strict";
const fs = require("fs");
const opcua = require("node-opcua");

const NAMESPACE = "urn:cellshuttle:shuttled";

function makeClient(pkiDir) {
  return opcua.OPCUAClient.create({
    applicationName: "node-opcua operator test",
    applicationUri: "urn:cellshuttle:tests:node-opcua",
    securityMode: opcua.MessageSecurityMode.SignAndEncrypt,
    securityPolicy: opcua.SecurityPolicy.Basic256Sha256,
    endpointMustExist: false,
    connectionStrategy: { maxRetry: 0 },
    clientCertificateManager: new opcua.OPCUACertificateManager({
      rootFolder: pkiDir,
      automaticallyAcceptUnknownCertificate: true,
    }),
  });
}

async function child(session, nodeId, name) {
  const browsed = await session.browse(nodeId);
  const ref = browsed.references.find((r) => r.browseName.name === name);
  if (!ref) throw new Error(`no ${name} below ${nodeId.toString()}`);
  return ref.nodeId;
}

async function callMethod(session, unit, name, args) {
  const result = await session.call({
    objectId: unit,
    methodId: await child(session, unit, name),
    inputArguments: args.map((value) => ({ dataType: opcua.DataType.String, value })),
  });
  return {
    status: result.statusCode.name,
    outputs: (result.outputArguments || []).map((v) => v.value),
  };
}

async function refusedSession(client, identity) {
  try {
    const session = await client.createSession(identity);
    await session.close();
    return "accepted";
  } catch (error) {
    const message = String(error.message);
    if (message.includes("Cannot find ANONYMOUS user token policy")) return "not offered";
    return message.includes("BadUserAccessDenied") || message.includes("BadIdentityToken")
      ? "refused" : `error: ${message}`;
  }
}

async function main() {
  const [endpoint, pkiDir, protocolFile, operator, password, viewer, viewerPassword] =
    process.argv.slice(2);
  const result = {};
  const client = makeClient(pkiDir);
  await client.connect(endpoint);
  try {
    const session = await client.createSession({
      type: opcua.UserTokenType.UserName, userName: operator, password,
    });
    const namespaces = await session.readNamespaceArray();
    const ns = namespaces.indexOf(NAMESPACE);
    if (ns < 0) throw new Error(`namespace ${NAMESPACE} not served`);
    const deviceSet = await child(session, opcua.resolveNodeId("ObjectsFolder"), "DeviceSet");
    const devices = await session.browse(deviceSet);
    result.instrument = devices.references[0].browseName.name;
    const unitSet = await child(session, devices.references[0].nodeId, "FunctionalUnitSet");
    const units = await session.browse(unitSet);
    result.units = units.references.map((r) => r.browseName.name).sort();
    const unit = units.references.find((r) => r.browseName.name === "U01").nodeId;
    const fnSet = await child(session, unit, "FunctionSet");
    result.functions = (await session.browse(fnSet)).references.map((r) => r.browseName.name).sort();

    const load = await callMethod(session, unit, "LoadProtocol", [fs.readFileSync(protocolFile, "utf8")]);
    result.load = load;
    result.start = await callMethod(session, unit, "Start", [load.outputs[0], "{}", "node-opcua test"]);
    result.empty_reason = (await callMethod(session, unit, "Hold", [""])).status;
    const state = await session.read({
      nodeId: await child(session, unit, "State"), attributeId: opcua.AttributeIds.Value,
    });
    result.state = state.value.value;
    const write = await session.write({
      nodeId: await child(session, unit, "State"),
      attributeId: opcua.AttributeIds.Value,
      value: { value: { dataType: opcua.DataType.String, value: "COMPLETE" } },
    });
    result.write = write.name;
    await session.close();

    const viewerSession = await client.createSession({
      type: opcua.UserTokenType.UserName, userName: viewer, password: viewerPassword,
    });
    result.viewer_hold = (await callMethod(viewerSession, unit, "Hold", ["not mine"])).status;
    await viewerSession.close();
    result.wrong_password = await refusedSession(client, {
      type: opcua.UserTokenType.UserName, userName: operator, password: "wrong",
    });
    result.anonymous = await refusedSession(client, { type: opcua.UserTokenType.Anonymous });
    result.security = client.securityPolicy.toString();
  } finally {
    await client.disconnect();
  }
  console.log("RESULT " + JSON.stringify(result));
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
