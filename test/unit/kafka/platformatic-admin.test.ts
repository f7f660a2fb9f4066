import { MultipleErrors, NetworkError, ProtocolError, ResponseError } from '@platformatic/kafka';
import { describe, expect, it } from 'vitest';
import { describedGroup, leadersInMetadataAnswer } from '../../../src/kafka/platformatic/admin.js';
import { everyProtocolErrorIs } from '../../../src/kafka/platformatic/errors.js';

const response = (...ids: string[]) =>
  new ResponseError(20, 2, Object.fromEntries(ids.map((id, i) => [`/results/${i}`, [new ProtocolError(id).apiCode as number, null] as [number, null]])), {});

describe('@platformatic/kafka admin adapter', () => {
  it('tolerates a failure only when every answer in it is the expected one', () => {
    expect(everyProtocolErrorIs(new MultipleErrors('Deleting groups failed.', [response('GROUP_ID_NOT_FOUND', 'GROUP_ID_NOT_FOUND')]), 'GROUP_ID_NOT_FOUND')).toBe(true);
    expect(everyProtocolErrorIs(new MultipleErrors('Creating topics failed.', [response('TOPIC_ALREADY_EXISTS')]), 'TOPIC_ALREADY_EXISTS')).toBe(true);
    // One group not empty beside one not found: the deletion did not do what was asked.
    expect(everyProtocolErrorIs(response('GROUP_ID_NOT_FOUND', 'NON_EMPTY_GROUP'), 'GROUP_ID_NOT_FOUND')).toBe(false);
    // A coordinator that could not be reached beside one that answered "not found".
    expect(everyProtocolErrorIs(new MultipleErrors('Deleting groups failed.', [response('GROUP_ID_NOT_FOUND'), new NetworkError('Connection closed')]), 'GROUP_ID_NOT_FOUND')).toBe(false);
    expect(everyProtocolErrorIs(new MultipleErrors('x', []), 'GROUP_ID_NOT_FOUND')).toBe(false);
    expect(everyProtocolErrorIs(new Error('TOPIC_ALREADY_EXISTS'), 'TOPIC_ALREADY_EXISTS')).toBe(false);
  });

  it('describes a group member with its static id and its assignment per topic', () => {
    const members = new Map([
      ['m-1', { id: 'm-1', groupInstanceId: 'spans-0', clientId: 'c', clientHost: '/10.0.0.1', assignments: new Map([['spans', { topic: 'spans', partitions: [2, 0] }], ['rules', { topic: 'rules', partitions: [1] }]]) }],
      ['m-2', { id: 'm-2', groupInstanceId: null, clientId: 'c', clientHost: '/10.0.0.2' }],
    ]);
    expect(describedGroup({ id: 'g', state: 'Stable', members })).toEqual({
      group: 'g',
      state: 'Stable',
      members: [
        { memberId: 'm-1', clientId: 'c', clientHost: '/10.0.0.1', groupInstanceId: 'spans-0', assignment: { spans: [0, 2], rules: [1] } },
        { memberId: 'm-2', clientId: 'c', clientHost: '/10.0.0.2', groupInstanceId: null, assignment: {} },
      ],
    });
  });

  it('reads partitions and leaders from a metadata answer the client rejected for a leaderless partition', () => {
    const answer = {
      topics: [
        { errorCode: 0, name: 'spans', partitions: [{ errorCode: 0, partitionIndex: 1, leaderId: 2 }, { errorCode: 5, partitionIndex: 0, leaderId: -1 }] },
        { errorCode: 0, name: 'rules', partitions: [{ errorCode: 0, partitionIndex: 0, leaderId: 1 }] },
      ],
    };
    const rejected = new ResponseError(3, 12, { '/topics/0/partitions/1': [5, null] }, answer);
    expect(leadersInMetadataAnswer(rejected, ['spans', 'rules'])).toEqual(
      new Map([
        ['spans', [{ partition: 0, leader: -1 }, { partition: 1, leader: 2 }]],
        ['rules', [{ partition: 0, leader: 1 }]],
      ]),
    );
    // A topic itself in error (or missing from the answer), or another failure: not an answer to use.
    expect(leadersInMetadataAnswer(rejected, ['spans', 'other'])).toBeUndefined();
    const topicInError = new ResponseError(3, 12, { '/topics/0': [29, null] }, { topics: [{ errorCode: 29, name: 'spans', partitions: [] }] });
    expect(leadersInMetadataAnswer(topicInError, ['spans'])).toBeUndefined();
    expect(leadersInMetadataAnswer(new NetworkError('Connection closed'), ['spans'])).toBeUndefined();
  });
});
