// A standard Alarms & Conditions client (node-opcua, an independent stack) against the daemon:
// subscribes to the Server object's events, calls ConditionRefresh and sees the retained
// conditions between RefreshStart and RefreshEnd, acknowledges one with its EventId and sees
// AckedState change; a viewer's Acknowledge and a too long TimedShelve are refused.
// Prints one line: RESULT {...} (JSON).
// usage: node alarm_session.js ENDPOINT OPERATOR PW VIEWER PW SUPERVISOR PW
"use strict";
const opcua = require("node-opcua");

const FIELDS = ["EventId", "EventType", "SourceName", "ConditionName", "Severity",
  "ActiveState.Id", "AckedState.Id", "Retain", "Comment", "ConditionId",
  "ShelvingState.CurrentState"];
const REFRESH_END = "ns=0;i=2788";

async function session(endpoint, userName, password) {
  const client = opcua.OPCUAClient.create({
    endpointMustExist: false, connectionStrategy: { maxRetry: 0 },
    securityMode: opcua.MessageSecurityMode.None, securityPolicy: opcua.SecurityPolicy.None,
  });
  await client.connect(endpoint);
  const s = await client.createSession({ type: opcua.UserTokenType.UserName, userName, password });
  return { client, session: s };
}

function asObject(values) {
  const event = {};
  FIELDS.forEach((name, i) => { event[name] = values[i].value; });
  return event;
}

function waitFor(events, predicate, what) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no event: ${what}`)), 10000);
    const check = () => {
      const found = events.filter(predicate);
      if (found.length) { clearTimeout(timer); resolve(found); } else setTimeout(check, 20);
    };
    check();
  });
}

async function call(s, objectId, methodId, inputArguments) {
  const result = await s.call({ objectId, methodId, inputArguments });
  return result.statusCode.name;
}

async function main() {
  const [endpoint, operator, opw, viewer, vpw, supervisor, spw] = process.argv.slice(2);
  const { client, session: s } = await session(endpoint, operator, opw);
  const subscription = await s.createSubscription2({
    requestedPublishingInterval: 50, requestedMaxKeepAliveCount: 20, publishingEnabled: true,
  });
  const item = await subscription.monitor(
    { nodeId: "ns=0;i=2253", attributeId: opcua.AttributeIds.EventNotifier },
    { queueSize: 100, filter: opcua.constructEventFilter(FIELDS), discardOldest: true },
    opcua.TimestampsToReturn.Neither,
  );
  const events = [];
  item.on("changed", (values) => events.push(asObject(values)));
  const refresh = await call(s, "ns=0;i=2782", "ns=0;i=3875",
    [{ dataType: opcua.DataType.UInt32, value: subscription.subscriptionId }]);
  await waitFor(events, (e) => e.EventType && e.EventType.toString() === REFRESH_END, "RefreshEnd");
  const conditions = events.filter((e) => e.ConditionName);
  const trip = conditions.find((e) => e.ConditionName === "OVER_TEMPERATURE");

  const v = await session(endpoint, viewer, vpw);
  const viewerAck = await call(v.session, trip.ConditionId, "ns=0;i=9111", [
    { dataType: opcua.DataType.ByteString, value: trip.EventId },
    { dataType: opcua.DataType.LocalizedText, value: { text: "viewer" } }]);
  await v.session.close(); await v.client.disconnect();

  const ack = await call(s, trip.ConditionId, "ns=0;i=9111", [
    { dataType: opcua.DataType.ByteString, value: trip.EventId },
    { dataType: opcua.DataType.LocalizedText, value: { text: "seen by node-opcua" } }]);
  const acked = await waitFor(events, (e) => e.ConditionName === "OVER_TEMPERATURE"
    && e["AckedState.Id"] === true, "AckedState true");

  const sup = await session(endpoint, supervisor, spw);
  const path = await sup.session.translateBrowsePath(
    opcua.makeBrowsePath(trip.ConditionId, ".ShelvingState"));
  const shelving = path.targets[0].targetId;
  const tooLong = await call(sup.session, shelving, "ns=0;i=2949",
    [{ dataType: opcua.DataType.Double, value: 9 * 3600 * 1000 }]);
  const shelve = await call(sup.session, shelving, "ns=0;i=2949",
    [{ dataType: opcua.DataType.Double, value: 600 * 1000 }]);
  const shelved = await waitFor(events, (e) => e.ConditionName === "OVER_TEMPERATURE"
    && e["ShelvingState.CurrentState"] && e["ShelvingState.CurrentState"].text === "TimedShelved",
    "TimedShelved");
  await sup.session.close(); await sup.client.disconnect();

  console.log("RESULT " + JSON.stringify({
    refresh,
    conditions: conditions.map((e) => [e.ConditionName, e.SourceName, e.Severity,
      e["ActiveState.Id"], e["AckedState.Id"], e.Retain]).sort(),
    viewer_ack: viewerAck,
    ack,
    acked_comment: acked[acked.length - 1].Comment.text,
    too_long: tooLong,
    shelve,
    shelved: shelved.length > 0,
  }));
  await subscription.terminate();
  await s.close();
  await client.disconnect();
}

main().catch((error) => { console.error(error); process.exit(1); });
